import type { ConsoleDeps, ConsolePermission, ConsolePrincipal } from './deps.ts';
import { html, type SafeHtml } from './html.ts';
import { CSRF_FIELD, type Flash } from './session.ts';

/** The pages of the console, each shown only to a token with its permission. */
export const NAV: ReadonlyArray<{ path: string; label: string; permission: ConsolePermission }> = [
  { path: '/', label: 'Queue', permission: 'dlq:read' },
  { path: '/bulk', label: 'Bulk resolve', permission: 'dlq:update' },
  { path: '/staleness', label: 'Staleness', permission: 'dlq:stats' },
  { path: '/jobs', label: 'Jobs', permission: 'jobs:read' },
  { path: '/archive', label: 'Archive', permission: 'archive:read' },
  { path: '/audit', label: 'Audit log', permission: 'audit:read' },
];

export interface PageContext {
  principal: ConsolePrincipal;
  csrf: string;
  deps: ConsoleDeps;
  currentPath: string;
  /** The notice the previous POST left for this page (its outcome), shown once. */
  flash?: Flash | undefined;
}

/** A notice at the top of a page: role status for news, alert for a refusal. */
export function notice(n: Flash, id = 'flash'): SafeHtml {
  return html`<p class="notice${n.ok ? '' : ' error'}" role="${n.ok ? 'status' : 'alert'}" id="${id}">${n.text}</p>`;
}

export function csrfInput(csrf: string): SafeHtml {
  return html`<input type="hidden" name="${CSRF_FIELD}" value="${csrf}">`;
}

export function page(title: string, body: SafeHtml, ctx?: PageContext): string {
  const nav = ctx
    ? html`<nav aria-label="Console"><ul>${NAV.filter((n) => ctx.deps.can(ctx.principal, n.permission)).map(
        (n) =>
          html`<li><a href="${n.path}"${ctx.currentPath === n.path ? html` aria-current="page"` : ''}>${n.label}</a></li>`,
      )}</ul></nav>
      ${
        ctx.deps.can(ctx.principal, 'dlq:read')
          ? html`<form class="find" method="get" action="/find" role="search" aria-label="Open an investigation"><label for="find-q" class="visually-hidden">Find investigation</label><input id="find-q" name="q" size="22" autocomplete="off" spellcheck="false" placeholder="entry or task uuid"><button type="submit" class="secondary">Open</button></form>`
          : ''
      }
      <div class="who"><span>Signed in as <strong>${ctx.principal.tokenName}</strong></span>
        <form method="post" action="/sign-out">${csrfInput(ctx.csrf)}<button type="submit">Sign out</button></form></div>`
    : '';
  return html`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title} · tasker-lifecycle</title><link rel="stylesheet" href="/assets/console.css"></head>
<body><a class="skip" href="#main">Skip to content</a>
<header class="top"><a class="brand" href="/">tasker-lifecycle</a>${nav}</header>
<main id="main" tabindex="-1">${ctx?.flash ? notice(ctx.flash) : ''}${body}</main>
<script src="/assets/console.js" defer></script></body></html>`.value;
}
