// Starts the product for the browser tests: a fresh database on DATABASE_URL's
// server, then `target/debug/reactivation dev --demo-data` (demo subscribers and agents) on free
// ports, and stops both again. Also launches Debian's Chromium through playwright-core.
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
export const DEMO_PASSWORD = 'reactivate-demo-2026'; // crates/reactivation/src/dev.rs
// crates/carrier-sim/src/demo.rs
export const FLAGGED = {
  msisdn: '+8613800138004',
  full_name: '刘洋',
  id_number: '510107198809254475',
  service_password: '975310',
  sms: '+8613900139004',
  flagged_contacts: ['+8613700137031', '+8613700137032'],
};
export const CLEAN = {
  msisdn: '+8613800138001',
  full_name: '张伟',
  id_number: '110105199003071239',
  service_password: '135790',
};
export const NO_BACKUP = {
  msisdn: '+8613800138003',
  full_name: '王强',
  id_number: '440305199211183515',
};

async function freePort() {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address();
  server.close();
  await once(server, 'close');
  return port;
}

// Every `REACTIVATION_…_ADDR` a service binds, read from the config sources, so a
// new service's port is covered without editing this file.
function addressVariables() {
  const found = new Set(['REACTIVATION_GATEWAY_ADDR', 'REACTIVATION_CARRIER_SIM_ADDR']);
  const crates = path.join(ROOT, 'crates');
  for (const crate of fs.readdirSync(crates)) {
    const src = path.join(crates, crate, 'src');
    if (!fs.existsSync(src)) continue;
    for (const file of fs.readdirSync(src, { recursive: true })) {
      if (!String(file).endsWith('config.rs')) continue;
      const text = fs.readFileSync(path.join(src, String(file)), 'utf8');
      for (const m of text.matchAll(/"(REACTIVATION_[A-Z_]+_ADDR)"/g)) found.add(m[1]);
    }
  }
  return [...found].sort();
}

function withDatabase(url, name) {
  const u = new URL(url);
  u.pathname = '/' + name;
  return u.toString();
}

function psql(url, sql) {
  const r = spawnSync('psql', ['-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', url, '-c', sql], { encoding: 'utf8' });
  if (r.error) throw new Error(`psql is needed to create the test database: ${r.error.message}`);
  if (r.status !== 0) throw new Error(`psql failed: ${r.stderr}`);
}

async function waitReady(url, child, logFile, timeoutMs = 90_000) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) break;
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch { /* not up yet */ }
    await new Promise((res) => setTimeout(res, 200));
  }
  const log = fs.existsSync(logFile) ? fs.readFileSync(logFile, 'utf8').slice(-4000) : '';
  throw new Error(`the dev stack did not get ready at ${url}\n${log}`);
}

/** The running product. */
export class Stack {
  static async start() {
    const binary = path.join(ROOT, 'target', 'debug', 'reactivation');
    if (!fs.existsSync(binary)) {
      throw new Error(`${binary} is missing: build it first (SQLX_OFFLINE=true cargo build -p reactivation)`);
    }
    const admin = process.env.DATABASE_URL || 'postgres://postgres@127.0.0.1:5432/postgres';
    const dbName = `browser_${Date.now()}_${process.pid}`;
    psql(admin, `CREATE DATABASE "${dbName}"`);
    const env = { ...process.env, DATABASE_URL: withDatabase(admin, dbName), REACTIVATION_LOG: process.env.REACTIVATION_LOG || 'info' };
    const ports = {};
    for (const name of addressVariables()) {
      ports[name] = await freePort();
      env[name] = `127.0.0.1:${ports[name]}`;
    }
    env.REACTIVATION_CARRIER_URL = `http://${env.REACTIVATION_CARRIER_SIM_ADDR}`;
    if (env.REACTIVATION_IDENTITY_ADDR) env.REACTIVATION_IDENTITY_URL = `http://${env.REACTIVATION_IDENTITY_ADDR}`;
    delete env.REACTIVATION_COOKIE_SECURE;
    // Every login comes from 127.0.0.1: the per-client limits would throttle the suite.
    env.REACTIVATION_RATE_LIMITS = 'off';
    const logDir = fs.mkdtempSync(path.join(os.tmpdir(), 'reactivation-browser-'));
    const logFile = path.join(logDir, 'dev.log');
    const out = fs.openSync(logFile, 'a');
    const child = spawn(binary, ['dev', '--demo-data'], { cwd: ROOT, env, stdio: ['ignore', out, out] });
    const stack = new Stack(child, admin, dbName, env, logFile);
    try {
      await waitReady(`${stack.gateway}/readyz`, child, logFile);
      await waitReady(`${stack.sim}/healthz`, child, logFile);
    } catch (e) {
      await stack.stop();
      throw e;
    }
    return stack;
  }

  constructor(child, admin, dbName, env, logFile) {
    this.child = child;
    this.admin = admin;
    this.dbName = dbName;
    this.gateway = `http://${env.REACTIVATION_GATEWAY_ADDR}`;
    this.sim = `http://${env.REACTIVATION_CARRIER_SIM_ADDR}`;
    this.logFile = logFile;
  }

  log() {
    return fs.existsSync(this.logFile) ? fs.readFileSync(this.logFile, 'utf8') : '';
  }

  async stop() {
    if (this.child.exitCode === null) {
      this.child.kill('SIGTERM');
      const exited = once(this.child, 'exit');
      const timer = new Promise((res) => setTimeout(res, 15_000, 'timeout'));
      if ((await Promise.race([exited, timer])) === 'timeout') {
        this.child.kill('SIGKILL');
        await exited;
      }
    }
    try {
      psql(this.admin, `DROP DATABASE IF EXISTS "${this.dbName}" WITH (FORCE)`);
    } catch (e) {
      console.error(`could not drop ${this.dbName}: ${e.message}`);
    }
  }

  // --- The customer API, as the subscriber's app uses it. ---

  async api(method, url, { token, json, body, headers = {} } = {}) {
    const h = { ...headers };
    if (token) h.authorization = `Bearer ${token}`;
    let payload = body;
    if (json !== undefined) {
      h['content-type'] = 'application/json';
      payload = JSON.stringify(json);
    }
    const r = await fetch(`${this.gateway}${url}`, { method, headers: h, body: payload });
    const text = await r.text();
    let data = text;
    try { data = JSON.parse(text); } catch { /* not JSON */ }
    return { status: r.status, data };
  }

  /**
   * Opens a case for `s` and proves identity as its risk tier asks (the
   * verification ladder): the service password, then the one-time code sent to
   * `s.sms` when the tier asks for both. A case whose tier asks for a store visit
   * is left waiting for it.
   */
  async openVerifiedCase(s, locale = 'en') {
    const opened = await this.api('POST', '/v1/cases', {
      json: { msisdn: s.msisdn, full_name: s.full_name, id_number: s.id_number, channel: 'app', locale },
    });
    if (opened.status !== 201) throw new Error(`open case: ${opened.status} ${JSON.stringify(opened.data)}`);
    const { case_id: id, case_token: token } = opened.data;
    if (s.service_password) {
      const proof = await this.api('POST', `/v1/cases/${id}/verifications`, {
        token,
        json: { method: 'service_password', password: s.service_password },
      });
      if (proof.status === 409 && String(proof.data.type || '').endsWith('store-visit-required')) return { id, token };
      if (proof.status !== 200) throw new Error(`verify: ${proof.status} ${JSON.stringify(proof.data)}`);
      if (!proof.data.accepted) {
        const needed = JSON.stringify(proof.data.still_needed || []);
        if (!needed.includes('"otp"') || !s.sms) throw new Error(`verify: ${JSON.stringify(proof.data)}`);
        const sent = await this.api('POST', `/v1/cases/${id}/otp`, { token });
        if (sent.status !== 202) throw new Error(`otp: ${sent.status} ${JSON.stringify(sent.data)}`);
        const code = await this.latestCode(s.sms);
        const second = await this.api('POST', `/v1/cases/${id}/verifications`, { token, json: { method: 'otp', code } });
        if (second.status !== 200 || !second.data.accepted) throw new Error(`verify otp: ${second.status} ${JSON.stringify(second.data)}`);
      }
    }
    return { id, token };
  }

  /** The six-digit code in the newest message the simulator delivered to `to`. */
  async latestCode(to, timeoutMs = 30_000) {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const r = await fetch(`${this.sim}/sim/outbox?to=${encodeURIComponent(to)}`);
      const messages = await r.json();
      for (const m of messages.slice().reverse()) {
        const found = (m.body || '').match(/\b\d{6}\b/);
        if (found) return found[0];
      }
      await new Promise((res) => setTimeout(res, 200));
    }
    throw new Error(`no code reached ${to}`);
  }

  async caseStatus(c) {
    return (await this.api('GET', `/v1/cases/${c.id}`, { token: c.token })).data;
  }

  async waitForState(c, state, timeoutMs = 90_000) {
    const deadline = Date.now() + timeoutMs;
    let last;
    while (Date.now() < deadline) {
      last = await this.caseStatus(c);
      if (last.state === state) return last;
      await new Promise((res) => setTimeout(res, 250));
    }
    throw new Error(`case ${c.id} did not reach ${state}; it is ${JSON.stringify(last && last.state)}`);
  }

  /**
   * Registers a subscriber of a test's own at the carrier simulator: `s` has
   * msisdn, full_name, id_number, service_password, sms (the backup contact) and
   * recent (three recent counterparties); no risk signals; suspended for `reason`.
   */
  async addSubscriber(s, reason = 'real_name_reverification') {
    const r = await fetch(`${this.sim}/sim/subscribers`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({
        msisdn: s.msisdn,
        full_name: s.full_name,
        id_number: s.id_number,
        service_password: s.service_password,
        backup_contacts: [{ kind: 'sms', address: s.sms }],
        recent_contacts: s.recent,
        signals: { fraud_linked_contacts: 0, sms_peak_per_hour: 0, intl_calls_24h: 0 },
        status: 'suspended',
        suspension_reason: reason,
      }),
    });
    if (r.status !== 201) throw new Error(`sim subscriber: ${r.status} ${await r.text()}`);
  }

  async simSubscriber(msisdn) {
    const r = await fetch(`${this.sim}/sim/subscribers/${encodeURIComponent(msisdn)}`);
    return r.json();
  }
}

/** Debian's Chromium, headless, with a fresh profile; returns { context, close }. */
export async function launchBrowser() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'reactivation-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM_PATH || '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1280, height: 860 },
    locale: 'en-US',
    timezoneId: 'Asia/Shanghai',
  });
  return {
    context,
    async close() {
      await context.close();
      fs.rmSync(userDataDir, { recursive: true, force: true });
    },
  };
}
