import { CITIES, THEMES, type VisitorFacts } from './choices.js';

const escapeHtml = (text: string): string =>
  text.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c] ?? c);

const SAFE = Symbol('html');
interface Html {
  readonly [SAFE]: string;
}
const isHtml = (value: unknown): value is Html => typeof value === 'object' && value !== null && SAFE in value;
/** Markup that is not escaped again: only for constants and the results of `html`. */
const trusted = (text: string): Html => ({ [SAFE]: text });
const piece = (value: unknown): string => (isHtml(value) ? value[SAFE] : escapeHtml(String(value ?? '')));

/** Tagged template that escapes every interpolated value, except `html` results (alone or in arrays). */
const html = (strings: TemplateStringsArray, ...values: unknown[]): Html =>
  trusted(
    strings.reduce((out, part, i) => {
      const value = values[i - 1];
      const text = i === 0 ? '' : Array.isArray(value) ? value.map(piece).join('') : piece(value);
      return out + text + part;
    }, ''),
  );

const SOURCES: Record<string, string> = {
  new: 'minted just now: no visitor cookie came with this request',
  cookie: 'the signed visitor cookie',
  auth: 'your login: no visitor cookie came with this request',
  fingerprint: 'an IP and User-Agent fingerprint',
};

const STYLE = `
:root { color-scheme: light; --bg: #f6f7f9; --card: #fff; --text: #1d232b; --muted: #5c6775; --line: #dde2e8; --accent: #1f6feb; --on-accent: #fff; }
[data-theme=dark] { color-scheme: dark; --bg: #12161c; --card: #1b212a; --text: #e3e8ee; --muted: #98a3b1; --line: #2d3540; --accent: #6ea8fe; --on-accent: #0b1220; }
* { box-sizing: border-box; }
body { margin: 0; background: var(--bg); color: var(--text); font: 16px/1.5 system-ui, sans-serif; }
main { max-width: 34rem; margin: 2rem auto; padding: 0 1rem; }
h1 { font-size: 1.4rem; margin: 0 0 1rem; }
h2 { font-size: 1rem; margin: 0 0 .6rem; }
section { background: var(--card); border: 1px solid var(--line); border-radius: 8px; padding: 1rem 1.2rem; margin-bottom: 1rem; }
dl { display: grid; grid-template-columns: 8rem 1fr; gap: .3rem 1rem; margin: 0; }
dt { color: var(--muted); }
dd { margin: 0; }
small, .note { color: var(--muted); font-size: .85rem; }
.message { border: 1px solid #d29922; background: #fff8c5; color: #1d232b; border-radius: 8px; padding: .6rem 1rem; }
form { display: flex; gap: .5rem; align-items: center; flex-wrap: wrap; margin: .5rem 0 0; }
label { display: flex; gap: .5rem; align-items: center; }
input, select, button { font: inherit; padding: .25rem .5rem; border: 1px solid var(--line); border-radius: 6px; background: var(--bg); color: var(--text); }
button { background: var(--accent); border-color: var(--accent); color: var(--on-accent); cursor: pointer; }
a { color: var(--accent); }
footer { color: var(--muted); font-size: .85rem; }
`;

/** The page around every view: the theme the visitor chose, the style, a heading. */
const layout = (theme: string, title: string, content: Html): string =>
  `<!doctype html>${
    html`<html lang="en" data-theme="${theme}">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>${title}</title><style>${trusted(STYLE)}</style></head>
<body><main>
<h1>visitor-state demo</h1>
${content}
</main></body></html>`[SAFE]
  }\n`;

const loginForm = (facts: VisitorFacts): Html =>
  facts.user
    ? html`<form method="post" action="/logout"><span>Logged in as <b id="user">${facts.user}</b></span><button>Log out</button></form>`
    : html`<p>Logged in as <b id="user">nobody</b></p>
<form method="post" action="/login"><label>Name <input name="name" maxlength="40" required autocomplete="off"></label><button>Log in</button></form>`;

const messageOf = (message: string | undefined): Html | string =>
  message === undefined ? '' : html`<p class="message" id="message" role="alert">${message}</p>`;

/** The demo's main page; `message` says why the last form was refused. */
export function renderPage(facts: VisitorFacts, message?: string): string {
  const theme = facts.theme ?? 'light';
  const shortId = `${facts.id.slice(0, 8)}…`;
  const cityOptions = CITIES.map(
    (geo) =>
      html`<option value="${geo.city}"${geo.city === facts.geo?.city ? trusted(' selected') : ''}>${geo.city}</option>`,
  );
  const themeOptions = THEMES.map(
    (name) => html`<option value="${name}"${name === facts.theme ? trusted(' selected') : ''}>${name}</option>`,
  );

  return layout(
    theme,
    'visitor-state demo',
    html`${messageOf(message)}
<section>
<h2>Who you are</h2>
<dl>
<dt>Visitor ID</dt><dd><code id="visitor-id">${shortId}</code></dd>
<dt>Came from</dt><dd><span id="source">${facts.source}</span> <small>${SOURCES[facts.source] ?? ''}</small></dd>
<dt>Confidence</dt><dd id="confidence">${facts.confidence}</dd>
</dl>
</section>
<section>
<h2>Your choices</h2>
<p>City: <b id="city">${facts.geo ? `${facts.geo.city}, ${facts.geo.country}` : 'not chosen yet'}</b> · Theme: <b id="theme">${facts.theme ?? 'not chosen yet'}</b></p>
<form method="post" action="/choices"><label>City <select name="city">${cityOptions}</select></label><button>Save city</button></form>
<form method="post" action="/choices"><label>Theme <select name="theme">${themeOptions}</select></label><button>Save theme</button></form>
</section>
<section id="login">
<h2>Toy login</h2>
${loginForm(facts)}
<p class="note">Logging in or out keeps your visitor ID and your choices. Log in with the same name in another
browser (or a private window): it lands on this same visitor, with its city and theme. That is
<code>linkPolicy: 'adopt'</code>: at login, <code>visitor.link(userId)</code> moves a device onto the visitor that user
already has.</p>
<p class="note">A toy: the name sits in a plain <code>demo_user</code> cookie that anyone can edit, so anyone typing a
name gets that name's visitor. A real application verifies its users itself and hands the verified ID to
<code>authResolver</code> and <code>link()</code>.</p>
</section>
<footer>Clear this site's cookies to become a new visitor. The same facts as JSON: <a href="/api/visitor">/api/visitor</a></footer>`,
  );
}

/** A page of its own for a status the demo answers with (404, 413, 500): what happened, and a way back. */
export function renderMessage(theme: string, title: string, text: string): string {
  return layout(
    theme,
    `${title} · visitor-state demo`,
    html`<section>
<h2 id="title">${title}</h2>
<p id="message">${text}</p>
<p><a href="/">Back to the demo</a></p>
</section>`,
  );
}

/** `GET /login`: the login form on a page of its own (the form posts to the same address). */
export function renderLogin(facts: VisitorFacts): string {
  return layout(
    facts.theme ?? 'light',
    'Log in · visitor-state demo',
    html`<section id="login">
<h2>Toy login</h2>
${loginForm(facts)}
<p class="note">Any name of 1 to 40 characters. Log in with the same name in another browser to see it land on the
same visitor.</p>
<p><a href="/">Back to the demo</a></p>
</section>`,
  );
}
