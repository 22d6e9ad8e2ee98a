// Reactivation console: SLA countdowns, local times and live updates.
// Hand-written, no build step. The server renders every page completely; this
// script only keeps countdowns ticking and, when a shown case changes elsewhere,
// re-fetches the page's main section (X-Fragment: 1) and swaps it in place.
(function () {
  'use strict';

  // Set once per full page load: a live update never reloads the page.
  window.__consoleLoadedAt = Date.now();

  var lang = document.documentElement.lang === 'en' ? 'en' : 'zh';
  var WORDS = {
    en: {
      d: 'd', h: 'h', m: 'm', s: 's', sep: ' ',
      left: '{} left', overdue: 'overdue by {}',
      updated: 'Updated with the latest changes.',
      stale: 'This page changed elsewhere. Your typing is kept until you reload.',
      reload: 'Load changes'
    },
    zh: {
      d: '天', h: '小时', m: '分', s: '秒', sep: '',
      left: '剩余{}', overdue: '已超时{}',
      updated: '页面已自动更新。',
      stale: '此页面内容已有更新。为保留您正在填写的内容，请手动刷新。',
      reload: '加载更新'
    }
  };
  var W = WORDS[lang];

  function duration(secs) {
    secs = Math.max(0, Math.floor(secs));
    var d = Math.floor(secs / 86400), h = Math.floor((secs % 86400) / 3600), m = Math.floor((secs % 3600) / 60);
    if (d > 0) return d + W.d + W.sep + h + W.h;
    if (h > 0) return h + W.h + W.sep + m + W.m;
    if (m > 0) return m + W.m;
    return secs + W.s;
  }

  function tick() {
    var now = Date.now();
    var els = document.querySelectorAll('time[data-due]');
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var due = Date.parse(el.getAttribute('data-due'));
      if (isNaN(due)) continue;
      var left = Math.round((due - now) / 1000);
      el.textContent = (left >= 0 ? W.left : W.overdue).replace('{}', duration(Math.abs(left)));
      el.classList.toggle('is-breached', left < 0);
      var row = el.closest('tr');
      if (row && left < 0) row.classList.add('breached');
    }
  }

  function localTimes(root) {
    var els = root.querySelectorAll('time[data-local]');
    for (var i = 0; i < els.length; i++) {
      var el = els[i];
      var when = new Date(el.getAttribute('datetime'));
      if (isNaN(when.getTime())) continue;
      el.title = el.getAttribute('datetime');
      el.textContent = when.toLocaleString(lang === 'en' ? 'en-GB' : 'zh-CN', {
        year: 'numeric', month: '2-digit', day: '2-digit', hour: '2-digit', minute: '2-digit'
      });
    }
  }

  function announce(text) {
    var status = document.getElementById('live-status');
    if (!status) return;
    status.textContent = text;
    status.classList.add('shown');
    clearTimeout(announce.timer);
    announce.timer = setTimeout(function () { status.classList.remove('shown'); }, 2500);
  }

  function view() { return document.getElementById('view'); }

  // True while the agent is filling in a form: a swap would lose their input.
  function busy() {
    var v = view();
    if (!v) return false;
    var fields = v.querySelectorAll('textarea, input[type="text"], input[type="password"], select');
    for (var i = 0; i < fields.length; i++) {
      var f = fields[i];
      if (f.tagName === 'SELECT' ? f.selectedIndex > 0 : f.value !== f.defaultValue) return true;
    }
    return false;
  }

  function showStale() {
    if (document.getElementById('stale-notice')) return;
    var v = view();
    if (!v) return;
    var p = document.createElement('p');
    p.id = 'stale-notice';
    p.className = 'notice notice-warn';
    p.setAttribute('role', 'status');
    p.appendChild(document.createTextNode(W.stale + ' '));
    var b = document.createElement('button');
    b.type = 'button';
    b.className = 'btn btn-quiet';
    b.textContent = W.reload;
    b.addEventListener('click', function () { refresh(true); });
    p.appendChild(b);
    v.insertBefore(p, v.firstChild);
  }

  var refreshing = false, again = false, timer = null;

  function schedule() {
    clearTimeout(timer);
    timer = setTimeout(function () { refresh(false); }, 200);
  }

  function refresh(force) {
    if (refreshing) { again = true; return; }
    if (!force && busy()) { showStale(); return; }
    refreshing = true;
    fetch(location.href, { headers: { 'X-Fragment': '1' }, credentials: 'same-origin', cache: 'no-store' })
      .then(function (r) {
        if (r.status === 401) { location.reload(); return null; }
        return r.ok ? r.text() : null;
      })
      .then(function (html) {
        if (html === null) return;
        var main = document.getElementById('main');
        var focused = document.activeElement && document.activeElement.id;
        main.innerHTML = html;
        localTimes(main);
        tick();
        if (focused && document.getElementById(focused)) document.getElementById(focused).focus();
        announce(W.updated);
        connect();
      })
      .catch(function () { /* the next change or reconnect tries again */ })
      .then(function () {
        refreshing = false;
        if (again) { again = false; schedule(); }
      });
  }

  // One EventSource for the shown page.
  var source = null, sourceUrl = null, opened = false, usedFallback = false;

  function onCaseStatus(e) {
    var v = view();
    try {
      var data = JSON.parse(e.data);
      if (v && data.case_id === v.dataset.caseId && data.version > Number(v.dataset.version)) schedule();
    } catch (err) { /* ignore malformed events */ }
  }

  function onChange(e) {
    var v = view();
    if (!v) return;
    var kind = v.dataset.liveKind;
    try {
      var data = JSON.parse(e.data);
      if (kind === 'queue') {
        var states = (v.dataset.states || '').split(' ');
        var cases = (v.dataset.cases || '').split(' ');
        if (states.indexOf(data.state) >= 0 || cases.indexOf(data.case_id) >= 0) schedule();
      } else if (kind === 'case') {
        if (data.case_id === v.dataset.caseId && data.version > Number(v.dataset.version)) schedule();
      } else if (kind === 'dashboard') {
        clearTimeout(timer);
        timer = setTimeout(function () { refresh(false); }, 2000);
      }
    } catch (err) { /* ignore */ }
  }

  function open(url, isCaseStream) {
    if (source && sourceUrl === url) return;
    if (source) source.close();
    sourceUrl = url;
    opened = false;
    source = new EventSource(url);
    source.addEventListener('open', function () {
      // A reconnect may have missed changes: read the page again.
      if (opened) schedule();
      opened = true;
    });
    if (isCaseStream) source.addEventListener('status', onCaseStatus);
    source.addEventListener('change', onChange);
    source.addEventListener('resync', schedule);
    source.addEventListener('error', function () {
      if (isCaseStream && !opened && !usedFallback) {
        // No per-case stream here: follow every change and keep this case's.
        usedFallback = true;
        open('/console/events', false);
      }
    });
  }

  function connect() {
    var v = view();
    var kind = v && v.dataset.liveKind;
    if (!window.EventSource || !kind || kind === 'none') {
      if (source) { source.close(); source = null; sourceUrl = null; }
      return;
    }
    if (kind === 'case' && !usedFallback) {
      open('/v1/agent/cases/' + encodeURIComponent(v.dataset.caseId) + '/events', true);
    } else {
      open('/console/events', false);
    }
  }

  function start() {
    // A one-shot notice (?done=…) is shown once; live refreshes read the plain URL.
    if (window.URL && window.history && history.replaceState) {
      var url = new URL(location.href);
      if (url.searchParams.has('done')) {
        url.searchParams.delete('done');
        history.replaceState(null, '', url.pathname + url.search + url.hash);
      }
    }
    localTimes(document);
    tick();
    setInterval(tick, 1000);
    connect();
  }

  if (document.readyState === 'loading') document.addEventListener('DOMContentLoaded', start);
  else start();
})();
