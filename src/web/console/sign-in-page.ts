import { html, type SafeHtml } from './html.ts';
import { CSRF_FIELD } from './session.ts';

/**
 * The sign-in form. A link of the form /sign-in#token=SECRET (printed by `npm start`) fills the
 * field and submits it from the page, so the secret never appears in a URL the server sees or logs.
 */
export function signInPage(nonce: string, next: string, problem?: string): SafeHtml {
  return html`<div class="signin card"><h1>Sign in</h1>
${problem ? html`<p class="notice error" role="alert">${problem}</p>` : ''}
<form method="post" action="/sign-in" id="sign-in">
<input type="hidden" name="${CSRF_FIELD}" value="${nonce}"><input type="hidden" name="next" value="${next}">
<p><label for="token">Token</label><input id="token" name="token" type="password" autocomplete="current-password" required autofocus></p>
<p><button type="submit">Sign in</button></p>
<p class="muted">Create a token with <code>npm run cli -- token create --name you --permissions dlq:read,dlq:update</code>.</p>
</form></div>`;
}
