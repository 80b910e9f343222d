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
header.top { background: #1d2330; color: #fff; padding: .5rem 1rem; display: flex; flex-wrap: wrap; gap: .5rem 1.25rem; align-items: center; }
header.top a { color: #fff; }
header.top .brand { font-weight: 700; text-decoration: none; }
header.top nav ul { list-style: none; display: flex; flex-wrap: wrap; gap: .25rem 1rem; margin: 0; padding: 0; }
header.top nav a[aria-current="page"] { text-decoration-thickness: 3px; }
header.top .who { margin-left: auto; display: flex; gap: .75rem; align-items: center; }
header.top .who button, header.top form.find button { background: transparent; color: #fff; border: 1px solid #fff; }
header.top form.find { display: flex; gap: .35rem; align-items: center; }
header.top form.find input { width: 11.5rem; max-width: 60vw; }
.visually-hidden { position: absolute; width: 1px; height: 1px; overflow: hidden; clip: rect(0 0 0 0); white-space: nowrap; }
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
button.danger { background: var(--bad); border-color: var(--bad); }
form.inline { display: inline; }
label.inline { display: inline; font-weight: 400; color: var(--fg); font-size: 1rem; }
.badge { display: inline-block; justify-self: start; align-self: start; width: max-content; max-width: 100%; padding: 0 .45rem; border-radius: 999px; font-size: .8rem; border: 1px solid currentColor; white-space: nowrap; }
.badge.bad { color: var(--bad); } .badge.warn { color: var(--warn); } .badge.ok { color: var(--ok); } .badge.muted { color: var(--muted); }
.muted { color: var(--muted); }
.notice { border-left: 4px solid var(--accent); background: #eef3ff; padding: .6rem .8rem; margin-bottom: 1rem; }
.notice.error { border-color: var(--bad); background: #fdecec; }
.notice.warn { border-color: var(--warn); background: #fff4e0; }
.notice p { margin: .2rem 0; } .notice ul { margin: .2rem 0; }
.why { font-size: 1.05rem; border-left: 4px solid var(--warn); padding: .3rem .7rem; background: #fff; }
ul.changes { list-style: none; margin: 0; padding: 0; }
ul.changes .key { font-weight: 600; }
details.more summary { cursor: pointer; }
details.more pre { max-height: 20rem; overflow: auto; }
.grid2 { display: grid; grid-template-columns: minmax(0, 1fr) minmax(0, 1fr); gap: 1rem; }
dl.kv { display: grid; grid-template-columns: minmax(0, max-content) minmax(0, 1fr); gap: .2rem 1rem; margin: 0; }
dl.kv dt { color: var(--muted); font-weight: 600; overflow-wrap: anywhere; }
dl.kv dd { margin: 0; overflow-wrap: anywhere; }
pre { background: #f0f2f5; padding: .5rem; overflow-x: auto; white-space: pre-wrap; overflow-wrap: anywhere; font-size: .85rem; margin: .25rem 0; }
.summary-line { font-size: 1.1rem; font-weight: 600; }
/* The graph keeps its natural size (its text stays readable) and scrolls sideways in its frame. */
figure.graph { margin: 0; max-width: 100%; overflow-x: auto; }
.graph svg { display: block; max-width: none; }
td code, dd code { overflow-wrap: anywhere; }
ol.timeline { list-style: none; padding: 0; margin: 0; }
ol.timeline li { display: grid; grid-template-columns: 11rem 4rem 1fr; gap: .5rem; align-items: start; padding: .25rem 0; border-bottom: 1px dashed var(--line); }
ol.timeline .badge { justify-self: start; }
.pager { display: flex; gap: 1rem; align-items: center; margin-top: .75rem; }
.view-switch { display: flex; flex-wrap: wrap; gap: .5rem 1.25rem; margin: 0 0 .75rem; }
.view-switch a[aria-current="page"] { font-weight: 700; text-decoration-thickness: 3px; }
svg.spark { display: block; max-width: 100%; }
.signin { max-width: 26rem; margin: 4rem auto; }
.signin input { width: 100%; }
@media (max-width: 720px) {
  .grid2 { grid-template-columns: 1fr; }
  dl.kv { grid-template-columns: minmax(0, 1fr); }
  dl.kv dd { margin-bottom: .35rem; }
  header.top form.find input { width: 100%; }
  ol.timeline li { grid-template-columns: 1fr; }
  header.top .who { margin-left: 0; }
  table.responsive thead { display: none; }
  table.responsive tr { display: block; border-bottom: 2px solid var(--line); padding: .25rem 0; }
  /* Each cell a line: its label in a left margin, its content flowing as it does in a table
     (a badge keeps its own width, text and line breaks stay in the content's column). */
  table.responsive td { display: block; position: relative; min-height: 1.6rem; border: 0; padding: .15rem .5rem .15rem 8.5rem; overflow-wrap: anywhere; }
  table.responsive td:not([data-label]) { padding-left: .5rem; }
  table.responsive td::before { content: attr(data-label); position: absolute; left: .5rem; width: 7.5rem; color: var(--muted); font-weight: 600; font-size: .85rem; }
}
`;

/**
 * Sign-in from a link (/sign-in#token=...: the fragment never reaches the server), then live
 * updates: every element with data-refresh-url is fetched again every data-refresh-seconds and
 * its content replaced (the queue's rows, each job's live part, a run's status), while the
 * "Refresh every N s" switch (#auto-refresh, remembered in this browser) is on. A part that says
 * data-settled (a run that has ended) stops refreshing. Does nothing on pages without such parts.
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
  var parts = Array.prototype.slice.call(document.querySelectorAll('[data-refresh-url]'));
  if (parts.length === 0) return;
  var toggle = document.getElementById('auto-refresh');
  var status = document.getElementById('live-status');
  var KEY = 'tasker-console-auto-refresh';
  try { if (toggle && localStorage.getItem(KEY) === 'off') toggle.checked = false; } catch (e) {}
  if (toggle) toggle.addEventListener('change', function () {
    try { localStorage.setItem(KEY, toggle.checked ? 'on' : 'off'); } catch (e) {}
    if (status) status.textContent = toggle.checked ? 'Refreshing' : 'Not refreshing';
  });
  parts.forEach(function (part) {
    var url = part.getAttribute('data-refresh-url');
    var seconds = Number(part.getAttribute('data-refresh-seconds')) || 10;
    if (part.querySelector('[data-settled]')) return;
    var timer = setInterval(function () {
      if (toggle && !toggle.checked) return;
      fetch(url, { credentials: 'same-origin', headers: { 'accept': 'text/html' } })
        .then(function (r) { if (!r.ok) throw new Error(String(r.status)); return r.text(); })
        .then(function (text) {
          part.innerHTML = text;
          if (part.querySelector('[data-settled]')) clearInterval(timer);
          if (status) status.textContent = 'Updated ' + new Date().toLocaleTimeString();
        })
        .catch(function (e) { if (status) status.textContent = 'Live update failed (' + e.message + ')'; });
    }, seconds * 1000);
  });
})();
`;
