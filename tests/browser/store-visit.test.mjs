// The store-visit remedy in a real browser (Debian's headless Chromium), against the
// whole product started with `reactivation dev` on a fresh database (issue 14 items 2
// and 8): the carrier stopped the number on a police request, so the case is refused
// online and waits for a store visit; a store agent searches the walk-in's number,
// ticks the original documents seen, types the ID number from the card, confirms the
// face comparison and records the visit; a security analyst approves from the case
// page; the carrier simulator restores the number and the case is `reactivated`.
// A screenshot of the store-visit page goes to docs/screenshots/.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';

import { DEMO_PASSWORD, ROOT, Stack, launchBrowser } from './stack.mjs';

const SHOTS = path.join(ROOT, 'docs', 'screenshots');
const LIVE = 90_000;

// A subscriber of this test's own at the carrier simulator (not one of the demo four).
const WALK_IN = {
  msisdn: '+8613800138566',
  full_name: '孙丽',
  id_number: '44030419900307561X',
  service_password: '662288',
  recent: ['+8613700137661', '+8613700137662', '+8613700137663'],
  sms: '+8613900139566',
};

let stack;

async function shot(page, name) {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

async function login(page, username) {
  await page.goto(`${stack.gateway}/console/login?lang=en`);
  await page.getByLabel('Username').fill(username);
  await page.getByLabel('Password').fill(DEMO_PASSWORD);
  await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Log in' }).click()]);
}

before(async () => {
  stack = await Stack.start();
  await stack.addSubscriber(WALK_IN, 'police_request');
});

after(async () => {
  if (stack) await stack.stop();
});

test('a store agent records the in-person check of an extreme-tier case, an analyst approves, and the case is reactivated', async () => {
  const c = await stack.openVerifiedCase(WALK_IN);
  const waiting = await stack.waitForState(c, 'awaiting_store_visit', LIVE);
  assert.deepEqual(waiting.needs, ['store_visit']);

  const storeBrowser = await launchBrowser();
  try {
    const page = await storeBrowser.context.newPage();
    await login(page, 'store.demo');
    await Promise.all([page.waitForNavigation(), page.getByRole('link', { name: 'Store visits' }).click()]);
    assert.equal(new URL(page.url()).pathname, '/console/store-visits');
    await page.getByLabel('Mobile number (+86…)').fill(WALK_IN.msisdn);
    await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Search' }).click()]);
    assert.match(await page.locator('#store-result').innerText(), /\+86\*{7}8566/, 'the number is masked');
    const form = page.locator(`form.store-visit[data-case-id="${c.id}"]`);
    await form.waitFor();

    // Another person's ID card is refused and changes nothing.
    await form.getByLabel('Resident ID card').check();
    await form.getByLabel('Police release letter').check();
    await form.getByLabel('ID number on the card').fill('110105198805120034');
    await form.getByLabel("I compared the face with the card's photo").check();
    const refused = await Promise.all([page.waitForNavigation(), form.getByRole('button', { name: 'Record the store visit' }).click()]);
    assert.equal(refused[0].status(), 409);
    assert.equal((await stack.caseStatus(c)).state, 'awaiting_store_visit', 'nothing changed');

    // The right card.
    await page.goto(`${stack.gateway}/console/store-visits`);
    await page.getByLabel('Mobile number (+86…)').fill(WALK_IN.msisdn);
    await Promise.all([page.waitForNavigation(), page.getByRole('button', { name: 'Search' }).click()]);
    await form.waitFor();
    await form.getByLabel('Resident ID card').check();
    await form.getByLabel('Police release letter').check();
    await form.getByLabel('ID number on the card').fill(WALK_IN.id_number);
    await form.getByLabel("I compared the face with the card's photo").check();
    await shot(page, 'store-visit');
    await Promise.all([page.waitForNavigation(), form.getByRole('button', { name: 'Record the store visit' }).click()]);
    const recorded = page.locator('#store-visit-recorded');
    await recorded.waitFor();
    assert.equal(await recorded.getAttribute('data-case-id'), c.id);
    assert.match(await recorded.innerText(), /goes on to the security department/);
    assert.ok(!(await page.content()).includes(WALK_IN.id_number), 'the ID number is not echoed');
  } finally {
    await storeBrowser.close();
  }

  // The visit satisfied the extreme tier's proof: an analyst decides now.
  await stack.waitForState(c, 'security_review', LIVE);
  const analystBrowser = await launchBrowser();
  try {
    const page = await analystBrowser.context.newPage();
    await login(page, 'security.demo');
    await page.goto(`${stack.gateway}/console/cases/${c.id}`);
    await Promise.all([page.waitForNavigation(), page.locator('button[data-action="claim"]').click()]);
    await page.getByText('You hold this case now.').waitFor();
    const approve = page.locator('form[data-action="approve"]');
    await approve.getByLabel('Reason (optional)').fill('Store visit: original ID card and the police release letter seen.');
    await Promise.all([page.waitForNavigation(), approve.getByRole('button', { name: 'Approve (full service)' }).click()]);
    await page.getByText('Decision recorded.').waitFor();
    await page.waitForFunction(
      () => document.getElementById('case-state')?.dataset.state === 'reactivated',
      null,
      { timeout: LIVE },
    );
    const timeline = await page.locator('ol.timeline').innerText();
    assert.match(timeline, /store\.demo/, 'the store agent is named in the timeline');
    assert.equal((await stack.simSubscriber(WALK_IN.msisdn)).status, 'active');
  } finally {
    await analystBrowser.close();
  }
});
