// The assisted opening in a real browser (Debian's headless Chromium), against the
// whole product started with `reactivation dev` on a fresh database (issue 14 item 8):
// a hotline agent searches the caller's number, opens a case on the caller's behalf
// from the console, never sees the case token (it goes by SMS to the contact on file),
// the caller proves with the one-time code through the customer API, and the agent
// sees the case `reactivated` on its page and in the number search.
// Screenshots of the two pages go to docs/screenshots/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { DEMO_PASSWORD, ROOT, Stack, launchBrowser } from './stack.mjs';

const SHOTS = path.join(ROOT, 'docs', 'screenshots');
const LIVE = 90_000;

// A subscriber of this test's own at the carrier simulator (not one of the demo four).
const CALLER = {
  msisdn: '+8613800138555',
  full_name: '赵敏',
  id_number: '110105198805120034',
  service_password: '551177',
  recent: ['+8613700137551', '+8613700137552', '+8613700137553'],
  sms: '+8613900139555',
};

let stack;

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function outbox(to) {
  const r = await fetch(`${stack.sim}/sim/outbox?to=${encodeURIComponent(to)}`);
  assert.equal(r.status, 200);
  return r.json();
}

async function waitForMessage(to, find, what) {
  const deadline = Date.now() + LIVE;
  while (Date.now() < deadline) {
    for (const m of (await outbox(to)).slice().reverse()) {
      const found = find(m.body || '');
      if (found) return found;
    }
    await new Promise((res) => setTimeout(res, 250));
  }
  throw new Error(`no ${what} reached ${to}`);
}

before(async () => {
  stack = await Stack.start();
  await stack.addSubscriber(CALLER);
});

after(async () => {
  if (stack) await stack.stop();
});

test('a hotline agent opens a case for a caller, the caller proves with the code, and the case is reactivated', async () => {
  const browser = await launchBrowser();
  try {
    const page = await browser.context.newPage();
    await page.goto(`${stack.gateway}/console/login?lang=en`);
    await page.getByLabel('Username').fill('cs.demo');
    await page.getByLabel('Password').fill(DEMO_PASSWORD);
    await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Log in' }).click()]);

    // Search by number: nothing yet; the number is shown masked.
    await Promise.all([page.waitForNavigation(), page.getByRole('link', { name: 'Search by number' }).click()]);
    await page.getByLabel('Mobile number (+86…)').fill(CALLER.msisdn);
    await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Search' }).click()]);
    await page.locator('#lookup-empty').waitFor();
    const result = await page.locator('#lookup-result').innerText();
    assert.match(result, /\+86\*{7}8555/, 'the number is masked');

    // The assisted opening form, from the search result.
    await Promise.all([page.waitForNavigation(), page.locator('#open-for-number').click()]);
    assert.equal(new URL(page.url()).pathname, '/console/assisted');
    await page.getByLabel('Suspended number (+86…)').fill(CALLER.msisdn);
    await page.getByLabel('Full name as on the ID card').fill(CALLER.full_name);
    await page.getByLabel('Resident ID number').fill(CALLER.id_number);
    await page.getByLabel('Channel').selectOption('hotline');
    await page.getByLabel('How identity was checked').selectOption('hotline_call');
    await page.getByLabel('Language of the case').selectOption('en');
    await shot(page, 'assisted-open');
    await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Open the case' }).click()]);
    const opened = page.locator('#assisted-opened');
    await opened.waitFor();
    const caseId = await opened.getAttribute('data-case-id');
    assert.match(caseId, /^[0-9a-f-]{36}$/);
    assert.match(await opened.innerText(), /sent by SMS to the contact on file/);

    // The caller gets the token by SMS; the agent's page never showed it.
    const token = await waitForMessage(CALLER.sms, (b) => (b.split('Case token: ')[1] || '').split(/\s/)[0], 'token SMS');
    assert.ok(token.length >= 40, token);
    assert.ok(!(await page.content()).includes(token), 'the token is not on the agent page');
    const c = { id: caseId, token };
    const seen = await stack.caseStatus(c);
    assert.equal(seen.state, 'awaiting_identity');

    // The caller proves with the code sent to them; the case runs to the end.
    const sent = await stack.api('POST', `/v1/cases/${caseId}/otp`, { token });
    assert.equal(sent.status, 202, JSON.stringify(sent.data));
    const code = await waitForMessage(
      CALLER.sms,
      (b) => (b.includes('Case token') ? null : (b.match(/\b\d{6}\b/) || [])[0]),
      'code',
    );
    const proof = await stack.api('POST', `/v1/cases/${caseId}/verifications`, {
      token,
      json: { method: 'otp', code },
    });
    assert.equal(proof.status, 200, JSON.stringify(proof.data));
    assert.equal(proof.data.accepted, true);
    await stack.waitForState(c, 'reactivated', LIVE);

    // The agent follows the case from the confirmation: reactivated, opened by them.
    await Promise.all([page.waitForNavigation(), page.locator('#view-opened-case').click()]);
    await page.waitForFunction(
      () => document.getElementById('case-state')?.dataset.state === 'reactivated',
      null,
      { timeout: LIVE },
    );
    const timeline = await page.locator('ol.timeline').innerText();
    assert.match(timeline, /cs\.demo/, 'the opening agent is named in the timeline');

    // And the number search lists it.
    await page.goto(`${stack.gateway}/console/numbers`);
    await page.getByLabel('Mobile number (+86…)').fill(CALLER.msisdn);
    await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Search' }).click()]);
    const row = page.locator(`tr[data-case-id="${caseId}"]`);
    await row.waitFor();
    const text = await row.innerText();
    assert.match(text, /Reactivated/);
    assert.match(text, /Hotline/);
    assert.match(text, /cs\.demo/);
    await shot(page, 'numbers-search');
  } finally {
    await browser.close();
  }
});
