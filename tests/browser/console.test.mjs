// The agent console in a real browser (Debian's headless Chromium), against the
// whole product started with `reactivation dev` on a fresh database.
//
//   1. A technical agent sees no approve button on a security case, and a hand-made
//      POST of it with their own valid CSRF token is refused (403).
//   2. A security analyst logs in, claims the flagged case from the security queue
//      and requests information; the subscriber answers through the customer API and
//      the case page updates without a reload; the analyst approves, and the page
//      shows `reactivated` once the carrier simulator has restored the number.
//   3. A supervisor's dashboard shows the day's figures.
// Screenshots of the login, queue, case and dashboard pages go to docs/screenshots/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { CLEAN, DEMO_PASSWORD, FLAGGED, NO_BACKUP, ROOT, Stack, launchBrowser } from './stack.mjs';

const SHOTS = path.join(ROOT, 'docs', 'screenshots');
const LIVE = 90_000; // a change reaches the page well within this (workers, carrier, SSE)

let stack;
let flagged; // { id, token }
let complained; // a case id with an open complaint

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function login(page, username, lang = 'en') {
  await page.goto(`${stack.gateway}/console/login?lang=${lang}`);
  await page.getByLabel(lang === 'en' ? 'Username' : '用户名').fill(username);
  await page.getByLabel(lang === 'en' ? 'Password' : '密码').fill(DEMO_PASSWORD);
  await Promise.all([
    page.waitForNavigation(),
    page.getByRole('button', { name: lang === 'en' ? 'Log in' : '登录' }).click(),
  ]);
}

async function caseState(page) {
  return page.locator('#case-state').getAttribute('data-state');
}

// A small PNG "document" for the evidence upload, drawn by the browser itself.
async function documentPng(context) {
  const page = await context.newPage();
  await page.setViewportSize({ width: 420, height: 260 });
  await page.setContent(`<body style="margin:0;font:16px sans-serif;background:#f7f3e8">
    <div style="margin:16px;padding:16px;border:2px solid #345;border-radius:10px;background:#fff">
      <h2 style="margin:0 0 8px;color:#234">劳动合同 · Employment contract</h2>
      <p style="margin:4px 0">Employer: Chengdu Example Trading Co.</p>
      <p style="margin:4px 0">Role: overseas sales (international calls, bulk SMS to clients)</p>
      <p style="margin:4px 0;color:#777">Signed 2026-03-01 · page 1 of 3</p></div></body>`);
  const png = await page.screenshot();
  await page.close();
  return png;
}

before(async () => {
  stack = await Stack.start();
  // Some history for the queues and the dashboard: a clean case that goes through by
  // itself, one waiting for identity proof, and the flagged case under review.
  await stack.openVerifiedCase(CLEAN);
  const waiting = await stack.openVerifiedCase({ ...NO_BACKUP, service_password: undefined });
  const complaint = await stack.api('POST', `/v1/cases/${waiting.id}/complaints`, {
    token: waiting.token,
    json: { channel: 'hotline', text: 'I cannot receive any code: no backup contact is on file. Please help me.' },
  });
  assert.ok([200, 201].includes(complaint.status), JSON.stringify(complaint.data));
  complained = waiting.id;
  flagged = await stack.openVerifiedCase(FLAGGED);
  await stack.waitForState(flagged, 'security_review');
});

after(async () => {
  if (stack) await stack.stop();
});

test('the login page refuses bad credentials with a generic message', async () => {
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    const response = await page.goto(`${stack.gateway}/console/login?lang=en`);
    const headers = response.headers();
    assert.match(headers['content-security-policy'], /script-src 'self'/);
    assert.equal(headers['x-content-type-options'], 'nosniff');
    await shot(page, 'login');
    await page.getByLabel('Username').fill('security.demo');
    await page.getByLabel('Password').fill('not-the-password');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').waitFor();
    assert.match(await page.getByRole('alert').innerText(), /Login failed/);
    // The same answer for an unknown user.
    await page.getByLabel('Username').fill('nobody.at.all');
    await page.getByLabel('Password').fill('whatever-it-is');
    await page.getByRole('button', { name: 'Log in' }).click();
    await page.getByRole('alert').waitFor();
    assert.match(await page.getByRole('alert').innerText(), /Login failed/);
    // A login form posted without the form's own token is refused.
    const forged = await page.evaluate(async () => {
      const r = await fetch('/console/login', {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: 'username=security.demo&password=reactivate-demo-2026&login_csrf=forged',
      });
      return r.status;
    });
    assert.equal(forged, 403);
  } finally {
    await browser.close();
  }
});

test('a technical agent sees no approve button and a hand-made approve is refused with 403', async () => {
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    await login(page, 'technical.demo');
    assert.match(page.url(), /\/console\/queue\?department=technical/);
    const cookies = await browser.context.cookies();
    const session = cookies.find((c) => c.name === 'reactivation_session');
    assert.ok(session, 'session cookie set');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(session.path, '/');

    // The security queue is not theirs.
    const queue = await page.goto(`${stack.gateway}/console/queue?department=security`);
    assert.equal(queue.status(), 403);

    await page.goto(`${stack.gateway}/console/cases/${flagged.id}`);
    assert.equal(await caseState(page), 'security_review');
    assert.equal(await page.locator('form[data-action="approve"]').count(), 0);
    assert.equal(await page.getByRole('button', { name: /Approve/ }).count(), 0);
    await page.locator('#no-actions').waitFor();

    // Tampered form: the right CSRF token of this session, an action the role may not take.
    const tampered = await page.evaluate(async (id) => {
      const csrf = document.querySelector('input[name="csrf"]').value;
      const version = document.getElementById('view').dataset.version;
      const post = (token) =>
        fetch(`/console/cases/${id}/actions`, {
          method: 'POST',
          headers: { 'content-type': 'application/x-www-form-urlencoded' },
          body: new URLSearchParams({ csrf: token, action: 'approve', expected_version: version, reason: 'tampered' }),
        }).then((r) => r.status);
      return { withToken: await post(csrf), withoutToken: await post('0'.repeat(64)) };
    }, flagged.id);
    assert.deepEqual(tampered, { withToken: 403, withoutToken: 403 });
    assert.equal((await stack.caseStatus(flagged)).state, 'security_review', 'nothing changed');
  } finally {
    await browser.close();
  }
});

test('an analyst claims, requests information, sees the answer arrive live, approves, and sees reactivated', async () => {
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    await login(page, 'security.demo');
    assert.match(page.url(), /\/console\/queue\?department=security/);

    const row = page.locator(`tr[data-case-id="${flagged.id}"]`);
    await row.waitFor();
    assert.match(await row.innerText(), /Security review/);
    assert.match(await row.innerText(), /\+86\*{7}8004/, 'the number is masked');
    await page.locator('time.countdown').first().waitFor();
    await shot(page, 'queue');

    await Promise.all([page.waitForNavigation(), row.locator('button[data-action="claim"]').click()]);
    await page.getByText('You hold this case now.').waitFor();
    assert.equal(new URL(page.url()).pathname, `/console/cases/${flagged.id}`);

    const ask = page.locator('form[data-action="request_info"]');
    await ask.getByLabel('Reason (required)').fill(
      'Please tell us who +86*******7031 and +86*******7032 are, and send a document that shows why you call abroad.',
    );
    await Promise.all([page.waitForNavigation(), ask.getByRole('button', { name: 'Request information' }).click()]);
    assert.equal(await caseState(page), 'awaiting_customer_security');

    // From here on the page must update by itself, never reload.
    const loadedAt = await page.evaluate(() => {
      window.__notReloaded = 'still the same page';
      return window.__consoleLoadedAt;
    });

    // The subscriber answers through the customer API: a document, then the explanation.
    const form = new FormData();
    form.append('file', new Blob([await documentPng(browser.context)], { type: 'image/png' }), 'contract.png');
    const upload = await stack.api('POST', `/v1/cases/${flagged.id}/evidence`, { token: flagged.token, body: form });
    assert.ok([200, 201].includes(upload.status), JSON.stringify(upload.data));
    const explained = await stack.api('POST', `/v1/cases/${flagged.id}/explanations`, {
      token: flagged.token,
      json: {
        statement: 'I sell tea abroad. Both numbers are colleagues at our trading company; the SMS burst was our new-year greeting to clients.',
        counterparties: [
          { msisdn: FLAGGED.flagged_contacts[0], relation: 'colleague', purpose: 'orders from overseas clients' },
          { msisdn: FLAGGED.flagged_contacts[1], relation: 'manager', purpose: 'daily sales meeting' },
        ],
      },
    });
    assert.ok([200, 201].includes(explained.status), JSON.stringify(explained.data));

    await page.waitForFunction(
      () => document.getElementById('case-state')?.dataset.state === 'security_review'
        && document.body.innerText.includes('I sell tea abroad'),
      null,
      { timeout: LIVE },
    );
    const after = await page.evaluate(() => ({ marker: window.__notReloaded, loadedAt: window.__consoleLoadedAt }));
    assert.deepEqual(after, { marker: 'still the same page', loadedAt }, 'updated without a reload');
    assert.match(await page.locator('#h-expl').locator('..').innerText(), /\+86\*{7}7031/, 'counterparties masked');
    const img = page.locator('figure.evidence img');
    // The image loads lazily: bring it into view (the page grew with the departments
    // and supervision cards), then wait for it.
    await img.waitFor({ state: 'attached' });
    await img.scrollIntoViewIfNeeded();
    await img.waitFor();
    await page.waitForFunction(() => {
      const i = document.querySelector('figure.evidence img');
      return i && i.complete && i.naturalWidth > 0;
    });
    const evidence = await page.evaluate(async () => {
      const r = await fetch(document.querySelector('figure.evidence img').getAttribute('src'));
      return { type: r.headers.get('content-type'), nosniff: r.headers.get('x-content-type-options'), csp: r.headers.get('content-security-policy') };
    });
    assert.equal(evidence.type, 'image/png');
    assert.equal(evidence.nosniff, 'nosniff');
    assert.match(evidence.csp, /sandbox/);
    await page.waitForFunction(() => !document.getElementById('live-status').classList.contains('shown'));
    await shot(page, 'case');

    // The analyst approves (the case changed since the page was rendered at first: the
    // live update carried the new version into the form).
    const approve = page.locator('form[data-action="approve"]');
    await approve.getByLabel('Reason (optional)').fill('Explained: colleagues and a clients greeting; contract matches the traffic.');
    await Promise.all([page.waitForNavigation(), approve.getByRole('button', { name: 'Approve (full service)' }).click()]);
    await page.getByText('Decision recorded.').waitFor();
    await page.evaluate(() => { window.__notReloaded = 'approved page'; });
    await page.waitForFunction(
      () => document.getElementById('case-state')?.dataset.state === 'reactivated',
      null,
      { timeout: LIVE },
    );
    assert.equal(await page.evaluate(() => window.__notReloaded), 'approved page');
    assert.match(await page.locator('#case-state').innerText(), /Reactivated/);
    const atCarrier = await stack.simSubscriber(FLAGGED.msisdn);
    assert.equal(atCarrier.status, 'active');
    const timeline = await page.locator('ol.timeline').innerText();
    for (const step of ['Information requested', 'Subscriber answered', 'Approved', 'Restored']) {
      assert.ok(timeline.includes(step), `timeline shows ${step}`);
    }
    assert.match(timeline, /security\.demo \(security analyst\)/, 'the agent is named in the timeline');
  } finally {
    await browser.close();
  }
});

test('a supervisor sees the dashboard with the day\'s figures', async () => {
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    await login(page, 'supervisor.demo');
    assert.match(page.url(), /\/console\/dashboard/);
    await page.getByRole('heading', { name: 'Supervisor dashboard' }).waitFor();
    const fp = await page.locator('#h-fp').locator('..').innerText();
    assert.match(fp, /fraud_linked_contacts/);
    assert.match(fp, /100%/, 'the approved flagged case counts as a false positive');
    const throughput = await page.locator('#h-throughput').locator('..').innerText();
    assert.match(throughput, /Security review/);
    assert.ok((await page.locator('svg[role="img"] rect.bar').count()) > 0, 'bar charts drawn');
    const complaints = page.locator('#h-complaints').locator('..');
    await complaints.locator(`a[href="/console/cases/${complained}"]`).waitFor();
    assert.match(await complaints.innerText(), /hotline/);
    await shot(page, 'dashboard');

    // The same page in Chinese (the choice is remembered in a cookie).
    await page.goto(`${stack.gateway}/console/dashboard?lang=zh-CN`);
    await page.getByRole('heading', { name: '主管看板' }).waitFor();
    await page.goto(`${stack.gateway}/console/dashboard`);
    await page.getByRole('heading', { name: '主管看板' }).waitFor();
  } finally {
    await browser.close();
  }
});

test('an admin creates an account, changes its roles, disables it, and the account cannot log in', async () => {
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    await login(page, 'admin.demo');
    assert.equal(new URL(page.url()).pathname, '/console/accounts', 'the accounts page is an admin\'s start page');
    await page.getByRole('heading', { name: 'Agent accounts', level: 1 }).waitFor();

    // The password policy refuses a weak password and nothing is created.
    const form = page.locator('#new-account');
    await form.getByLabel('Username').fill('cs.newhire');
    await form.getByLabel('Password (at least 12 characters)').fill('password1234');
    await form.getByLabel('customer service').check();
    const [weak] = await Promise.all([page.waitForNavigation(), form.getByRole('button', { name: 'Create the account' }).click()]);
    assert.equal(weak.status(), 422);
    await page.goto(`${stack.gateway}/console/accounts`);
    assert.equal(await page.locator('tr[data-username="cs.newhire"]').count(), 0);

    const password = 'Tea-garden at dawn 2026';
    await form.getByLabel('Username').fill('cs.newhire');
    await form.getByLabel('Password (at least 12 characters)').fill(password);
    await form.getByLabel('customer service').check();
    await Promise.all([page.waitForNavigation(), form.getByRole('button', { name: 'Create the account' }).click()]);
    assert.match(await page.locator('#accounts-done').innerText(), /Account created: cs\.newhire/);
    const row = page.locator('tr[data-username="cs.newhire"]');
    assert.match(await row.innerText(), /customer service/);
    assert.ok(!(await page.content()).includes(password), 'the password is not echoed');

    // Roles: add the store role.
    await row.locator('summary').click();
    const roles = row.locator('form[data-action="roles"]');
    await roles.getByLabel('store agent').check();
    await Promise.all([page.waitForNavigation(), roles.getByRole('button', { name: 'Save roles' }).click()]);
    assert.match(await page.locator('#accounts-done').innerText(), /Roles changed: cs\.newhire/);
    assert.match(await row.innerText(), /customer service, store agent/);

    // The new account logs in elsewhere, then is disabled: its session ends at once.
    const other = await launchBrowser();
    try {
      const p2 = await other.context.newPage();
      await p2.goto(`${stack.gateway}/console/login?lang=en`);
      await p2.getByLabel('Username').fill('cs.newhire');
      await p2.getByLabel('Password').fill(password);
      await Promise.all([p2.waitForNavigation(), p2.getByRole('button', { name: 'Log in' }).click()]);
      assert.match(p2.url(), /\/console\/queue\?department=cs/);

      await Promise.all([page.waitForNavigation(), row.locator('button[data-action="disable"]').click()]);
      assert.match(await page.locator('#accounts-done').innerText(), /Account disabled: cs\.newhire/);
      assert.equal(await row.getAttribute('data-enabled'), 'false');

      await p2.goto(`${stack.gateway}/console/queue?department=cs`);
      assert.match(p2.url(), /\/console\/login/, 'the disabled agent is sent to the login page');
    } finally {
      await other.close();
    }
    await shot(page, 'accounts');

    // The accounts page is for admins only.
    const cs = await launchBrowser();
    try {
      const p3 = await cs.context.newPage();
      await login(p3, 'cs.demo');
      const refused = await p3.goto(`${stack.gateway}/console/accounts`);
      assert.equal(refused.status(), 403);
    } finally {
      await cs.close();
    }
  } finally {
    await browser.close();
  }
});
