import { html, type SafeHtml } from './html.ts';
import { CSRF_FIELD } from './session.ts';

/**
 * The sign-in form. A link of the form /sign-in#token=SECRET (printed by `npm start`) fills the
 * field and submits it from the page, so the secret never appears in a URL the server sees or logs.
 * After a session ends under a form, the same form comes back with where to return (`next`) and
 * what was typed into the form and not saved (`draft`), so nothing is lost by signing in again.
 */
export function signInPage(
  nonce: string,
  next: string,
  problem?: string,
  options: { ended?: boolean; draft?: Readonly<Record<string, string>> | undefined } = {},
): SafeHtml {
  const draft = Object.entries(options.draft ?? {});
  return html`<div class="signin card"><h1>Sign in</h1>
${problem ? html`<p class="notice error" role="alert">${problem}</p>` : ''}
${
  options.ended
    ? html`<p class="notice" role="status" id="session-ended">Your session has ended (signed out, or the token expired or was revoked); nothing was changed. Sign in again to go back to <a href="${next}">where you were</a>${draft.length > 0 ? html`, with what you typed: <strong>your notes are kept</strong>` : ''}.</p>`
    : ''
}
<form method="post" action="/sign-in" id="sign-in">
<input type="hidden" name="${CSRF_FIELD}" value="${nonce}"><input type="hidden" name="next" value="${next}">
${draft.map(([k, v]) => html`<input type="hidden" name="${k}" value="${v}">`)}
<p><label for="token">Token</label><input id="token" name="token" type="password" autocomplete="current-password" required autofocus></p>
<p><button type="submit">Sign in</button></p>
<p class="muted">Create a token with <code>npm run cli -- token create --name you --permissions dlq:read,dlq:update</code>.</p>
</form></div>`;
}
