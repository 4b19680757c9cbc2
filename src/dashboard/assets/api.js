// Talking to the JSON API: the bearer token (asked for once, kept in localStorage) and a
// fetch wrapper that answers `{ok, status, data}` instead of throwing on HTTP errors.

const TOKEN_KEY = 'mc-token';

export const token = () => localStorage.getItem(TOKEN_KEY) || '';

/** The URL of the live feed: EventSource cannot set headers, so the token goes in the query. */
export function eventsUrl(lastEventId) {
  const params = new URLSearchParams();
  if (token()) params.set('access_token', token());
  if (lastEventId) params.set('lastEventId', lastEventId);
  const query = params.toString();
  return query ? `/api/events?${query}` : '/api/events';
}

/**
 * One API call. A network failure answers `{ok: false, status: 0, data: {error}}`; a 401
 * asks for the token (once for all callers waiting at that moment) and tries again.
 */
export async function request(method, path, body) {
  for (;;) {
    const headers = { Accept: 'application/json' };
    if (token()) headers.Authorization = `Bearer ${token()}`;
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    let response;
    try {
      response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch (error) {
      return { ok: false, status: 0, data: { error: `cannot reach the server (${error.message})`, code: 'network' } };
    }
    const text = await response.text().catch(() => '');
    let data = null;
    try {
      data = text ? JSON.parse(text) : null;
    } catch {
      data = { error: text.slice(0, 200) };
    }
    if (response.status === 401 && (!data || data.code === 'unauthorized')) {
      await askForToken(Boolean(token()));
      continue;
    }
    return { ok: response.ok, status: response.status, data };
  }
}

/** GET that throws on failure, for loading the lists. */
export async function getJson(path) {
  const answer = await request('GET', path);
  if (!answer.ok) throw new Error(`${path}: ${answer.data?.error ?? answer.status}`);
  return answer.data;
}

let pendingToken = null;

/** Shows the token form and resolves once a token is saved. */
export function askForToken(refused) {
  if (pendingToken) return pendingToken;
  const dialog = document.getElementById('token-dialog');
  const form = document.getElementById('token-form');
  const input = document.getElementById('f-token');
  const reopen = document.getElementById('token-open');
  document.getElementById('token-message').textContent = refused
    ? 'The server refused the saved API token. Enter the current one.'
    : 'This server asks for an API token. It is kept in this browser only.';
  pendingToken = new Promise((resolve) => {
    const open = () => {
      if (!dialog.open) dialog.showModal();
      input.focus();
    };
    const onSubmit = (event) => {
      event.preventDefault();
      const given = input.value.trim();
      if (!given) {
        input.setAttribute('aria-invalid', 'true');
        input.focus();
        return;
      }
      input.removeAttribute('aria-invalid');
      localStorage.setItem(TOKEN_KEY, given);
      input.value = '';
      form.removeEventListener('submit', onSubmit);
      reopen.removeEventListener('click', open);
      reopen.hidden = true;
      dialog.close();
      pendingToken = null;
      resolve(given);
    };
    form.addEventListener('submit', onSubmit);
    // Closing the form without a token leaves a button to come back to it.
    reopen.addEventListener('click', open);
    reopen.hidden = false;
    open();
  });
  return pendingToken;
}
