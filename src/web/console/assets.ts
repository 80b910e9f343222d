/**
 * The console's stylesheet and its one script, served as static text (no build step). Colours keep
 * a contrast of at least 4.5:1 on their backgrounds; the layout folds to one column under 720 px.
 */

export const CONSOLE_CSS = `
:root { --fg:#1d2330; --muted:#4a5366; --bg:#f6f7f9; --card:#fff; --line:#d5d9e0; --accent:#1f4fbf;
  --bad:#a4161a; --warn:#8a4b00; --ok:#1e6b2f; font-family: system-ui, sans-serif; color: var(--fg); background: var(--bg); }
* { box-sizing: border-box; }
body { margin: 0; line-height: 1.45; }
a { color: var(--accent); }
a:focus-visible, button:focus-visible, input:focus-visible, select:focus-visible, textarea:focus-visible, summary:focus-visible
  { outline: 3px solid #f0a400; outline-offset: 2px; }
.skip { position: absolute; left: -999px; top: 0; background: #fff; padding: .5rem; }
.skip:focus { left: .5rem; z-index: 10; }
header.top { background: #1d2330; color: #fff; padding: .5rem 1rem; display: flex; flex-wrap: wrap; gap: .5rem 1.5rem; align-items: center; }
header.top a { color: #fff; }
header.top .brand { font-weight: 700; text-decoration: none; }
header.top nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: .25rem 1rem; margin: 0; padding: 0; }
header.top nav a[aria-current="page"] { text-decoration-thickness: 3px; }
header.top .who { margin-left: auto; display: flex; gap: .75rem; align-items: center; }
header.top .who button { background: transparent; color: #fff; border: 1px solid #fff; }
main { max-width: 1240px; margin: 0 auto; padding: 1rem; }
h1 { font-size: 1.5rem; margin: .5rem 0 1rem; }
h2 { font-size: 1.2rem; margin: 1.5rem 0 .5rem; }
section.card, .card { background: var(--card); border: 1px solid var(--line); border-radius: 6px; padding: 1rem; margin-bottom: 1rem; }
table { border-collapse: collapse; width: 100%; background: var(--card); }
th, td { text-align: left; padding: .4rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { font-size: .85rem; color: var(--muted); }
.table-wrap { overflow-x: auto; }
form.filters { display: flex; flex-wrap: wrap; gap: .75rem; align-items: end; margin-bottom: 1rem; }
label { display: block; font-size: .85rem; color: var(--muted); font-weight: 600; }
input, select, textarea { font: inherit; padding: .35rem .5rem; border: 1px solid #7a8394; border-radius: 4px; background: #fff; color: var(--fg); }
textarea { width: 100%; min-height: 5rem; }
button { font: inherit; padding: .4rem .9rem; border-radius: 4px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; }
button.secondary { background: #fff; color: var(--accent); }
.badge { display: inline-block; padding: 0 .45rem; border-radius: 999px; font-size: .8rem; border: 1px solid currentColor; white-space: nowrap; }
.badge.bad { color: var(--bad); } .badge.warn { color: var(--warn); } .badge.ok { color: var(--ok); } .badge.muted { color: var(--muted); }
.muted { color: var(--muted); }
.notice { border-left: 4px solid var(--accent); background: #eef3ff; padding: .6rem .8rem; margin-bottom: 1rem; }
.notice.error { border-color: var(--bad); background: #fdecec; }
.grid2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1rem; }
dl.kv { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
dl.kv dt { color: var(--muted); font-weight: 600; }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
pre { background: #f0f2f5; padding: .5rem; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; font-size: .85rem; margin: .25rem 0; }
.summary-line { font-size: 1.1rem; font-weight: 600; }
.graph svg { max-width: 100%; height: auto; }
ol.timeline { list-style: none; padding: 0; margin: 0; }
ol.timeline li { display: grid; grid-template-columns: 11rem 4rem 1fr; gap: .5rem; align-items: start; padding: .25rem 0; border-bottom: 1px dashed var(--line); }
ol.timeline .badge { justify-self: start; }
.pager { display: flex; gap: 1rem; align-items: center; margin-top: .75rem; }
.signin { max-width: 26rem; margin: 4rem auto; }
.signin input { width: 100%; }
@media (max-width: 720px) {
  .grid2 { grid-template-columns: 1fr; }
  ol.timeline li { grid-template-columns: 1fr; }
  header.top .who { margin-left: 0; }
  table.responsive thead { display: none; }
  table.responsive tr { display: block; border-bottom: 2px solid var(--line); padding: .25rem 0; }
  table.responsive td { display: grid; grid-template-columns: 8rem 1fr; border: 0; padding: .15rem .5rem; }
  table.responsive td::before { content: attr(data-label); color: var(--muted); font-weight: 600; font-size: .85rem; }
}
`;

/**
 * Sign-in from a link (/sign-in#token=...: the fragment never reaches the server), then live updates of the queue: every data-refresh-seconds, fetch the rows fragment for the page's own
 * query and swap the table body; the count is announced politely. Does nothing without the table.
 */
export const CONSOLE_JS = `
(function () {
  var signIn = document.getElementById('sign-in');
  if (signIn && location.hash.indexOf('#token=') === 0) {
    var secret = decodeURIComponent(location.hash.slice(7));
    history.replaceState(null, '', location.pathname + location.search);
    document.getElementById('token').value = secret;
    signIn.submit();
  }
})();
(function () {
  var body = document.querySelector('[data-refresh-url]');
  if (!body) return;
  var url = body.getAttribute('data-refresh-url');
  var seconds = Number(body.getAttribute('data-refresh-seconds')) || 10;
  var status = document.getElementById('live-status');
  function refresh() {
    fetch(url, { credentials: 'same-origin', headers: { 'accept': 'text/html' } })
      .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.text(); })
      .then(function (text) {
        body.innerHTML = text;
        if (status) status.textContent = 'Updated ' + new Date().toLocaleTimeString();
      })
      .catch(function (e) { if (status) status.textContent = 'Live update failed (' + e.message + ')'; });
  }
  setInterval(refresh, seconds * 1000);
})();
`;
