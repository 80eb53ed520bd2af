// The page of serve-http (protocol/README.md, "Web page"): plain JavaScript over the REST
// API, no framework, no build step. Every value from the API is rendered as text
// (textContent, never innerHTML), and the key is sent only in the Authorization header.
'use strict';

const KEY_STORAGE = 'datasource-agent.key';
const API = '/api/v2';
const ROWS_PER_PAGE = 50;
const SOURCES_PER_PAGE = 100;

const $ = (id) => document.getElementById(id);

const state = {
  key: sessionStorage.getItem(KEY_STORAGE),
  sources: [],
  listPage: 1,
  listPages: 1,
  events: null,
  lastEventId: null,
  reconnectDelay: 1000,
  reconnectTimer: null,
  source: null, // the open data source's details
  view: { id: null, filter: '', sort: null, order: 'asc', cursors: [null], columns: [] },
};

// -- helpers

/** An element with attributes and children; strings become text nodes. */
function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'class') node.className = value;
    else if (name.startsWith('on')) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function clear(node) {
  node.replaceChildren();
  return node;
}

function text(value) {
  if (value === null || value === undefined) return '';
  if (typeof value === 'object') return JSON.stringify(value);
  return String(value);
}

function formatSize(bytes) {
  if (typeof bytes !== 'number') return '';
  const units = ['bytes', 'KB', 'MB', 'GB', 'TB'];
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  return unit === 0 ? `${bytes} bytes` : `${value.toFixed(value < 10 ? 1 : 0)} ${units[unit]}`;
}

function time(iso) {
  if (!iso) return el('span', { class: 'muted' }, '—');
  const date = new Date(iso);
  const shown = Number.isNaN(date.getTime()) ? iso : date.toLocaleString();
  return el('time', { datetime: iso, title: iso }, shown);
}

function statusBadge(status) {
  return el('span', { class: `status status-${String(status).replace(/[^a-z]/g, '')}`, 'data-status': status }, status);
}

function announce(message) {
  const region = $('announce');
  region.textContent = '';
  // A fresh text node, so that the same message twice is read twice.
  setTimeout(() => { region.textContent = message; }, 50);
}

class ApiError extends Error {
  constructor(status, body) {
    super(body && body.error ? body.error : `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }

  get code() { return this.body.code; }
  get details() { return this.body.details || {}; }

  describe() {
    const details = this.details;
    const parts = [this.message];
    if (this.code) parts.push(`(${this.code})`);
    const reason = details.reason || details.message;
    if (details.parameter) parts.push(`— ${details.parameter}${reason ? ` ${reason}` : ''}`);
    else if (reason) parts.push(`— ${reason}`);
    return parts.join(' ');
  }
}

/** Calls the REST API with the key; resolves to the JSON body, rejects with ApiError. */
async function api(method, path, { query = {}, body } = {}) {
  const url = new URL(API + path, location.origin);
  for (const [name, value] of Object.entries(query)) {
    if (value === undefined || value === null || value === '') continue;
    if (Array.isArray(value)) value.forEach((item) => url.searchParams.append(name, item));
    else url.searchParams.set(name, value);
  }
  const headers = { Accept: 'application/json' };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  const init = { method, headers, cache: 'no-store' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(url, init);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const error = new ApiError(response.status, data);
    if (response.status === 401) unauthorized(error);
    throw error;
  }
  return data;
}

// -- the key

function showKeyView(message) {
  $('key-view').hidden = false;
  $('list-view').hidden = true;
  $('source-view').hidden = true;
  $('forget').hidden = true;
  $('key-error').textContent = message || '';
  $('key-input').setAttribute('aria-invalid', message ? 'true' : 'false');
  $('key-input').focus();
}

function unauthorized(error) {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  stopEvents();
  $('key-input').value = '';
  const reason = error.details.message ? `: ${error.details.message}` : '';
  showKeyView(`That key was not accepted${reason}.`);
}

async function submitKey(event) {
  event.preventDefault();
  const key = $('key-input').value.trim();
  if (!key) {
    showKeyView('Enter a key.');
    return;
  }
  state.key = key;
  try {
    await api('GET', '/datasources', { query: { limit: 1 } });
  } catch (error) {
    if (error.status !== 401) showKeyView(error.describe());
    return;
  }
  sessionStorage.setItem(KEY_STORAGE, key);
  $('key-input').value = '';
  start();
}

function forgetKey() {
  sessionStorage.removeItem(KEY_STORAGE);
  state.key = null;
  stopEvents();
  location.hash = '#/';
  showKeyView('');
}

// -- live status

function setLive(on, label) {
  $('live').dataset.state = on ? 'on' : 'off';
  $('live-text').textContent = label || (on ? 'Live' : 'Not connected');
}

function stopEvents() {
  if (state.events) state.events.close();
  state.events = null;
  clearTimeout(state.reconnectTimer);
  setLive(false);
}

function scheduleReconnect() {
  clearTimeout(state.reconnectTimer);
  state.reconnectTimer = setTimeout(connectEvents, state.reconnectDelay);
  state.reconnectDelay = Math.min(state.reconnectDelay * 2, 30000);
}

/** Opens the event stream with a short-lived token (EventSource cannot send the key). */
async function connectEvents() {
  if (!state.key) return;
  if (state.events) state.events.close();
  state.events = null;
  let token;
  try {
    token = (await api('POST', '/events/token')).token;
  } catch (error) {
    if (error.status !== 401) {
      setLive(false, 'Reconnecting…');
      scheduleReconnect();
    }
    return;
  }
  const url = new URL(`${API}/events`, location.origin);
  url.searchParams.set('token', token);
  if (state.lastEventId) url.searchParams.set('lastEventId', state.lastEventId);
  const source = new EventSource(url);
  state.events = source;
  source.addEventListener('ready', (event) => {
    state.lastEventId = event.lastEventId || state.lastEventId;
    state.reconnectDelay = 1000;
    setLive(true);
    const ready = JSON.parse(event.data);
    // Changes that could not be replayed: read the list (and the open source) again.
    if (ready.resync) refresh();
  });
  source.addEventListener('statusChanged', (event) => {
    state.lastEventId = event.lastEventId || state.lastEventId;
    statusChanged(JSON.parse(event.data));
  });
  source.addEventListener('error', () => {
    if (state.events !== source) return;
    if (source.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. the token expired): a new token, then resume.
      setLive(false, 'Reconnecting…');
      scheduleReconnect();
    } else {
      setLive(false, 'Reconnecting…');
    }
  });
}

function statusChanged(change) {
  // An upload of this page that has finished processing leaves the uploads list.
  for (const item of $('uploads').querySelectorAll('li[data-id]')) {
    if (item.dataset.id !== change.datasourceId) continue;
    item.querySelector('.upload-status').textContent = `Processing ${change.status}`;
    setTimeout(() => item.remove(), 1500);
  }
  const known = state.sources.find((source) => source.datasourceId === change.datasourceId);
  if (known) {
    known.status = change.status;
    known.processedAt = change.processedAt;
    renderSources();
  } else {
    loadSources();
  }
  announce(`${change.fileName} is ${change.status}`);
  if (state.view.id === change.datasourceId) openSource(change.datasourceId, { keepView: true });
}

// -- the list

async function loadSources() {
  try {
    const body = await api('GET', '/datasources', { query: { page: state.listPage, limit: SOURCES_PER_PAGE } });
    state.sources = body.dataSources;
    state.listPages = Math.max(1, body.pagination.totalPages);
    if (state.listPage > state.listPages) {
      state.listPage = state.listPages;
      return loadSources();
    }
    $('list-error').textContent = '';
    renderSources();
  } catch (error) {
    if (error.status !== 401) $('list-error').textContent = `Could not list the data sources: ${error.describe()}`;
  }
  return undefined;
}

function renderSources() {
  const body = clear($('sources').tBodies[0]);
  for (const source of state.sources) {
    const selected = source.datasourceId === state.view.id;
    body.append(el('tr', { 'data-id': source.datasourceId, class: selected ? 'selected' : null },
      el('th', { scope: 'row' },
        el('a', { href: `#/sources/${encodeURIComponent(source.datasourceId)}`, 'aria-current': selected ? 'page' : null },
          source.fileName)),
      el('td', { class: 'wide-only' }, source.contentType),
      el('td', { class: 'num' }, formatSize(source.fileSize)),
      el('td', {}, statusBadge(source.status)),
      el('td', { class: 'wide-only' }, time(source.uploadedAt)),
      el('td', {}, time(source.processedAt))));
  }
  $('list-empty').hidden = state.sources.length > 0;
  $('list-pager').hidden = state.listPages <= 1;
  $('list-page').textContent = `Page ${state.listPage} of ${state.listPages}`;
  $('list-prev').disabled = state.listPage <= 1;
  $('list-next').disabled = state.listPage >= state.listPages;
}

// -- uploads

function uploadFiles(files) {
  for (const file of files) uploadFile(file);
}

function uploadFile(file) {
  const progress = el('progress', { max: 1, value: 0, 'aria-label': `Upload of ${file.name}` });
  const status = el('span', { class: 'upload-status' }, 'Uploading…');
  const item = el('li', { class: 'upload' }, el('span', { class: 'upload-name' }, file.name), progress, status);
  $('uploads').prepend(item);
  const request = new XMLHttpRequest();
  request.open('POST', `${API}/datasources`);
  request.setRequestHeader('Authorization', `Bearer ${state.key}`);
  request.responseType = 'json';
  request.upload.addEventListener('progress', (event) => {
    if (!event.lengthComputable) return;
    progress.value = event.loaded / event.total;
    status.textContent = `${Math.round((100 * event.loaded) / event.total)} %`;
  });
  request.addEventListener('load', () => {
    const body = request.response || {};
    if (request.status === 201) {
      progress.value = 1;
      status.textContent = 'Uploaded; processing';
      item.dataset.id = body.datasourceId;
      if (!state.sources.some((source) => source.datasourceId === body.datasourceId)) {
        state.sources.unshift(body);
        renderSources();
      }
      announce(`${file.name} uploaded; processing`);
    } else {
      const error = new ApiError(request.status, body);
      item.classList.add('failed');
      status.textContent = `Failed: ${error.describe()}`;
      if (request.status === 401) unauthorized(error);
    }
  });
  request.addEventListener('error', () => {
    item.classList.add('failed');
    status.textContent = 'Failed: the connection was lost';
  });
  const form = new FormData();
  form.append('file', file, file.name);
  request.send(form);
}

// -- one data source

function route() {
  const match = /^#\/sources\/([^/]+)$/.exec(location.hash);
  if (match) {
    openSource(decodeURIComponent(match[1]));
  } else {
    closeSource();
  }
}

function closeSource() {
  state.view.id = null;
  state.source = null;
  $('source-view').hidden = true;
  renderSources();
}

async function openSource(id, { keepView = false } = {}) {
  const fresh = state.view.id !== id;
  if (fresh) {
    state.view = { id, filter: '', sort: null, order: 'asc', cursors: [null], columns: [] };
    $('filter-input').value = '';
    clearFilterError();
    clear($('rows').tHead);
    clear($('rows').tBodies[0]);
    $('rows-info').textContent = '';
    $('download-link').hidden = true;
  }
  $('source-view').hidden = false;
  $('source-error').textContent = '';
  renderSources();
  let details;
  try {
    details = await api('GET', `/datasources/${encodeURIComponent(id)}`, { query: { maxAge: 0 } });
  } catch (error) {
    if (state.view.id !== id) return;
    $('source-title').textContent = 'Data source';
    clear($('source-meta'));
    $('source-error').textContent = error.describe();
    return;
  }
  if (state.view.id !== id) return;
  state.source = details;
  renderDetails(details);
  if (fresh && !keepView) $('source-title').focus();
  await loadRows();
}

function renderDetails(details) {
  $('source-title').textContent = details.fileName;
  const meta = clear($('source-meta'));
  const add = (label, value) => meta.append(el('div', {}, el('dt', {}, label), el('dd', {}, value)));
  add('Status', statusBadge(details.status));
  add('Type', details.contentType);
  add('Size', formatSize(details.fileSize));
  if (details.rowCount !== undefined) add('Rows', details.rowCount.toLocaleString());
  add('Uploaded', time(details.uploadedAt));
  add('Processed', time(details.processedAt));
  const stats = details.processingStats;
  if (stats) {
    add('Cleaned rows', text(stats.cleanedRows));
    add('Errors', text(stats.errors));
    add('Warnings', text(stats.warnings));
  }
  if (details.error) add('Error', details.error.message);
  add('Id', el('code', {}, details.datasourceId));

  const columns = clear($('columns').tBodies[0]);
  for (const column of details.columns || []) {
    const cleaning = (column.cleaning || []).map((rule) => {
      const example = rule.example ? ` (${text(rule.example.from)} → ${text(rule.example.to)})` : '';
      const detail = rule.detail ? ` ${rule.detail}` : '';
      return el('li', {}, `${rule.rule} × ${rule.count}${detail}${example}`);
    });
    columns.append(el('tr', {},
      el('th', { scope: 'row' }, column.name),
      el('td', {}, column.type),
      el('td', { class: 'samples' }, (column.sampleValues || []).map(text).join(', ')),
      el('td', {}, cleaning.length ? el('ul', { class: 'plain' }, cleaning) : el('span', { class: 'muted' }, 'none'))));
  }
  $('columns-box').hidden = !(details.columns && details.columns.length);

  const issues = details.issues || [];
  $('issues-box').hidden = issues.length === 0;
  $('issues-title').textContent = `Issues (${issues.length}${issues.length >= 100 ? '+' : ''})`;
  const issueRows = clear($('issues').tBodies[0]);
  for (const issue of issues) {
    issueRows.append(el('tr', {},
      el('td', {}, issue.severity), el('td', { class: 'num' }, text(issue.line)), el('td', {}, text(issue.column)),
      el('td', {}, issue.kind), el('td', {}, issue.reason)));
  }
  $('delete').disabled = false;
}

function clearFilterError() {
  clear($('filter-error'));
  $('filter-input').setAttribute('aria-invalid', 'false');
}

/** A filter error where it occurs: the message, and the filter with a caret under the position. */
function showFilterError(error) {
  const details = error.details;
  const box = clear($('filter-error'));
  const position = Number.isInteger(details.position) ? details.position : null;
  const where = position === null ? '' : ` at character ${position + 1}`;
  box.append(el('p', {}, `Filter error${where}: ${details.reason || error.message}`));
  const filter = typeof details.filter === 'string' ? details.filter : state.view.filter;
  if (position !== null) {
    box.append(el('pre', { class: 'caret', 'aria-hidden': 'true' },
      filter, '\n', ' '.repeat(Math.min(position, filter.length)), '^'));
    const input = $('filter-input');
    input.focus();
    input.setSelectionRange(position, Math.min(position + 1, input.value.length));
  }
  $('filter-input').setAttribute('aria-invalid', 'true');
}

async function loadRows() {
  const view = state.view;
  const id = view.id;
  const details = state.source;
  const info = $('rows-info');
  if (details.status !== 'completed') {
    clear($('rows').tHead);
    clear($('rows').tBodies[0]);
    info.textContent = details.status === 'processing'
      ? 'Processing; the rows appear here when it completes.'
      : 'Processing failed: there are no rows.';
    $('prev').disabled = true;
    $('next').disabled = true;
    $('page-label').textContent = '';
    return;
  }
  const cursor = view.cursors[view.cursors.length - 1];
  let page;
  try {
    page = await api('GET', `/datasources/${encodeURIComponent(id)}/data`, {
      query: { limit: ROWS_PER_PAGE, filter: view.filter, sort: view.sort, order: view.sort ? view.order : null, cursor },
    });
  } catch (error) {
    if (state.view !== view) return;
    if (error.code === 'INVALID_PARAMETERS' && error.details.parameter === 'filter') {
      showFilterError(error);
      info.textContent = 'The filter was not applied; the rows below are unchanged.';
    } else {
      info.textContent = `Could not read the rows: ${error.describe()}`;
    }
    return;
  }
  if (state.view !== view) return;
  clearFilterError();
  view.columns = page.columns;
  view.nextCursor = page.pagination.nextCursor;
  renderRows(page);
}

function renderRows(page) {
  const view = state.view;
  const head = clear($('rows').tHead);
  const headRow = el('tr');
  for (const column of page.columns) {
    const sorted = view.sort === column.name;
    const direction = sorted ? (view.order === 'desc' ? 'descending' : 'ascending') : null;
    const arrow = sorted ? (view.order === 'desc' ? '▼' : '▲') : '↕';
    headRow.append(el('th', { scope: 'col', 'aria-sort': direction || 'none', class: column.type === 'number' ? 'num' : null },
      el('button', {
        type: 'button', class: 'sort', 'data-column': column.name,
        title: `Sort by ${column.name}`, onclick: () => sortBy(column.name),
      }, el('span', { class: 'column-name' }, column.name), ' ', el('span', { class: 'arrow', 'aria-hidden': 'true' }, arrow),
      el('span', { class: 'column-type' }, column.type))));
  }
  head.append(headRow);
  const body = clear($('rows').tBodies[0]);
  for (const row of page.data) {
    body.append(el('tr', {}, page.columns.map((column) => {
      const value = row[column.name];
      const missing = value === null || value === undefined;
      return el('td', { class: [column.type === 'number' ? 'num' : '', missing ? 'null' : ''].join(' ').trim() || null },
        missing ? '' : text(value));
    })));
  }
  const index = view.cursors.length - 1;
  const total = page.pagination.total;
  const first = total === 0 ? 0 : index * ROWS_PER_PAGE + 1;
  const last = index * ROWS_PER_PAGE + page.data.length;
  const filtered = view.filter ? ' matching the filter' : '';
  $('rows-info').textContent = total === 0 ? `No rows${filtered}.` : `Rows ${first}–${last} of ${total.toLocaleString()}${filtered}.`;
  $('page-label').textContent = `Page ${index + 1} of ${Math.max(1, page.pagination.totalPages)}`;
  $('prev').disabled = index === 0;
  $('next').disabled = !page.pagination.nextCursor;
}

function sortBy(name) {
  const view = state.view;
  if (view.sort === name) view.order = view.order === 'asc' ? 'desc' : 'asc';
  else {
    view.sort = name;
    view.order = 'asc';
  }
  view.cursors = [null];
  loadRows().then(() => {
    const button = document.querySelector(`#rows button.sort[data-column="${CSS.escape(name)}"]`);
    if (button) button.focus();
  });
}

function applyFilter(event) {
  event.preventDefault();
  state.view.filter = $('filter-input').value.trim();
  state.view.cursors = [null];
  loadRows();
}

function nextPage() {
  if (!state.view.nextCursor) return;
  state.view.cursors.push(state.view.nextCursor);
  loadRows();
}

function previousPage() {
  if (state.view.cursors.length <= 1) return;
  state.view.cursors.pop();
  loadRows();
}

async function download() {
  const id = state.view.id;
  try {
    const link = await api('POST', `/datasources/${encodeURIComponent(id)}/download`, { body: {} });
    const anchor = $('download-link');
    anchor.href = link.downloadUrl;
    anchor.setAttribute('download', link.fileName);
    const until = new Date(link.expiresAt);
    anchor.textContent = `Download ${link.fileName} (link valid until ${until.toLocaleTimeString()})`;
    anchor.hidden = false;
    anchor.click();
  } catch (error) {
    $('source-error').textContent = `Could not make a download link: ${error.describe()}`;
  }
}

function askDelete() {
  if (!state.source) return;
  $('confirm-text').textContent = `“${state.source.fileName}” and its rows will be deleted. This cannot be undone.`;
  $('confirm-delete').showModal();
  $('confirm-cancel').focus();
}

async function confirmDelete() {
  $('confirm-delete').close();
  const { datasourceId: id, fileName } = state.source;
  $('delete').disabled = true;
  try {
    await api('DELETE', `/datasources/${encodeURIComponent(id)}`);
  } catch (error) {
    $('delete').disabled = false;
    $('source-error').textContent = `Could not delete: ${error.describe()}`;
    return;
  }
  state.sources = state.sources.filter((source) => source.datasourceId !== id);
  announce(`${fileName} deleted`);
  location.hash = '#/';
  loadSources();
  $('list-title').setAttribute('tabindex', '-1');
  $('list-title').focus();
}

// -- start

function refresh() {
  loadSources();
  if (state.view.id) openSource(state.view.id, { keepView: true });
}

function start() {
  $('key-view').hidden = true;
  $('list-view').hidden = false;
  $('forget').hidden = false;
  loadSources();
  route();
  connectEvents();
}

function wire() {
  $('key-form').addEventListener('submit', submitKey);
  $('forget').addEventListener('click', forgetKey);
  $('refresh').addEventListener('click', refresh);
  $('file-input').addEventListener('change', (event) => {
    uploadFiles(event.target.files);
    event.target.value = '';
  });
  const drop = $('drop');
  for (const name of ['dragenter', 'dragover']) {
    drop.addEventListener(name, (event) => {
      event.preventDefault();
      drop.classList.add('over');
    });
  }
  for (const name of ['dragleave', 'drop']) drop.addEventListener(name, () => drop.classList.remove('over'));
  drop.addEventListener('drop', (event) => {
    event.preventDefault();
    if (event.dataTransfer && event.dataTransfer.files.length) uploadFiles(event.dataTransfer.files);
  });
  // Files dropped anywhere else are not opened by the browser in place of the page.
  window.addEventListener('dragover', (event) => event.preventDefault());
  window.addEventListener('drop', (event) => event.preventDefault());
  $('list-prev').addEventListener('click', () => { state.listPage -= 1; loadSources(); });
  $('list-next').addEventListener('click', () => { state.listPage += 1; loadSources(); });
  $('filter-form').addEventListener('submit', applyFilter);
  $('filter-clear').addEventListener('click', () => {
    $('filter-input').value = '';
    state.view.filter = '';
    state.view.cursors = [null];
    clearFilterError();
    loadRows();
  });
  $('next').addEventListener('click', nextPage);
  $('prev').addEventListener('click', previousPage);
  $('download').addEventListener('click', download);
  $('delete').addEventListener('click', askDelete);
  $('confirm-cancel').addEventListener('click', () => $('confirm-delete').close());
  $('confirm-yes').addEventListener('click', confirmDelete);
  window.addEventListener('hashchange', () => { if (state.key) route(); });
}

wire();
if (state.key) start();
else showKeyView('');
