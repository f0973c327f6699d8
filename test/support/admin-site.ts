import { after } from 'node:test';
import assert from 'node:assert/strict';
import request from 'supertest';
import { createApp } from '../../src/app.js';
import { loadConfig } from '../../src/config.js';
import type { AppContext } from '../../src/server.js';
import { buildContext, type StartOptions } from '../../src/server.js';
import type { Member } from '../../src/features/members/types.js';
import { captureLogs } from './logs.js';
import { tempDataDir, NO_PLUGINS_DIR } from './temp.js';
import { ManualClock } from './clock.js';
import { csrfFrom } from './pages.js';

/** An in-process site for admin-page tests (supertest, no listening, worker not started). */

export const ADMIN_EMAIL = 'boss@example.com';
export const ADMIN_PASSWORD = 'admin password 0123';
export const MEMBER_PASSWORD = 'correct horse battery staple';
export const TEST_SITE_ACCESS_KEY = 'x'.repeat(32);

export interface TestSite {
  ctx: AppContext;
  app: ReturnType<typeof createApp>;
  clock: ManualClock;
  logs: ReturnType<typeof captureLogs>;
  dataDir: string;
}

export async function testSite(env: Record<string, string> = {}, dataDir = tempDataDir(), options: Pick<StartOptions, 'pluginSetupTimeoutMs'> = {}): Promise<TestSite> {
  const logs = captureLogs();
  const clock = new ManualClock();
  const config = loadConfig({ DATA_DIR: dataDir, PLUGINS_DIR: NO_PLUGINS_DIR, PORT: '0', ACCESS_KEY: TEST_SITE_ACCESS_KEY, ...env });
  const ctx = await buildContext(config, { logger: logs.logger, console: () => {}, clock, ...options });
  after(() => {
    ctx.mailer.close();
    ctx.db.close();
  });
  return { ctx, app: createApp(ctx), clock, logs, dataDir };
}

export function createMember(ctx: AppContext, m: { email: string; username: string; role: string; password: string } & Partial<Pick<Member, 'firstName' | 'lastName' | 'keapContactId'>>): Promise<Member> {
  return ctx.members.create({ firstName: '', lastName: '', keapContactId: null, fields: {}, tags: [], ...m });
}

/** A site with an administrator and Ada, a plain member. */
export async function testSiteWithAdmin(env: Record<string, string> = {}): Promise<TestSite & { admin: Member; ada: Member }> {
  const site = await testSite(env);
  const admin = await createMember(site.ctx, { email: ADMIN_EMAIL, username: 'boss', role: 'administrator', password: ADMIN_PASSWORD });
  const ada = await createMember(site.ctx, { email: 'ada@example.com', username: 'ada', role: 'member', password: MEMBER_PASSWORD, firstName: 'Ada', lastName: 'Lovelace' });
  return { ...site, admin, ada };
}

/** A browser-like agent logged in as the administrator. */
export async function adminAgent(app: TestSite['app']): Promise<request.Agent> {
  const agent = request.agent(app);
  const form = await agent.get('/admin/login');
  const res = await agent.post('/admin/login').type('form').send({ _csrf: csrfFrom(form.text), login: ADMIN_EMAIL, password: ADMIN_PASSWORD });
  assert.equal(res.status, 303, 'the administrator logs in');
  return agent;
}

/** Posts an admin form the way a browser does: with the form token taken from the page at `pagePath`. */
export async function submitForm(agent: request.Agent, pagePath: string, action: string, fields: Record<string, string>): Promise<request.Response> {
  const page = await agent.get(pagePath);
  return agent.post(action).type('form').send({ _csrf: csrfFrom(page.text), ...fields });
}

/** A browser-like agent logged in as Ada, the plain member (no admin rights), with its form token. */
export async function memberAgent(app: TestSite['app']): Promise<{ agent: request.Agent; csrf: string }> {
  const agent = request.agent(app);
  const csrf = csrfFrom((await agent.get('/login')).text);
  const res = await agent.post('/login').type('form').send({ _csrf: csrf, login: 'ada', password: MEMBER_PASSWORD });
  assert.equal(res.status, 303, 'Ada logs in as a member');
  return { agent, csrf };
}
