/**
 * Authorisation, table-driven: every operation × every role, plus deny, inheritance, group grants and
 * expiry. The expected outcome of each cell is written out by hand, not derived from the code under
 * test. Runs on every driver with grants.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { createMemoryDriver } from '../src/drivers/memory/index.js';
import { createPosixDriver } from '../src/drivers/posix/index.js';
import {
  collect,
  type Driver,
  fromLetters,
  type Grant,
  ROLES,
  type Space,
  StaticIdentitySource,
  StorageError,
  StorageProvider,
} from '../src/index.js';
import { tempRoot } from './helpers/tmp.js';

type Outcome = 'ok' | 'denied' | 'hidden';

/** What the user `u` has in each scenario (grants set by the system before the table runs). */
type Scenario =
  | 'none'
  | 'viewer'
  | 'uploader'
  | 'editor'
  | 'manager'
  | 'group-editor'
  | 'inherited-editor'
  | 'deny'
  | 'group-deny'
  | 'expired';
const SCENARIOS: Scenario[] = [
  'none',
  'viewer',
  'uploader',
  'editor',
  'manager',
  'group-editor',
  'inherited-editor',
  'deny',
  'group-deny',
  'expired',
];

// Columns follow SCENARIOS. o = ok, D = PERMISSION_DENIED, h = hidden (NOT_FOUND, or a parent that "does not exist").
const TABLE: Record<string, string> = {
  //               none viewer uploader editor manager group-ed inherited deny group-deny expired
  stat: '          h    o      o        o      o       o        o         h    h          h',
  list: '          h    o      D        o      o       o        o         h    h          h',
  read: '          h    o      D        o      o       o        o         h    h          h',
  overwrite: '     h    D      o        o      o       o        o         h    h          h',
  create: '        h    D      o        o      o       o        o         h    h          h',
  mkdir: '         h    D      o        o      o       o        o         h    h          h',
  delete: '        h    D      D        o      o       o        o         h    h          h',
  move: '          h    D      D        o      o       o        o         h    h          h',
  copy: '          h    D      D        o      o       o        o         h    h          h',
  metadata: '      h    D      o        o      o       o        o         h    h          h',
  favorite: '      h    o      o        o      o       o        o         h    h          h',
  listGrants: '    h    D      D        D      o       D        D         h    h          h',
  addGrant: '      h    D      D        D      o       D        D         h    h          h',
  listVersions: '  h    o      D        o      o       o        o         h    h          h',
  restoreVersion: 'h    D      D        o      o       o        o         h    h          h',
  lock: '          h    D      o        o      o       o        o         h    h          h',
  quota: '         h    o      D        o      o       o        o         h    h          h',
  listTrash: '     h    h      h        h      h       h        o         o    o          h',
};

function expected(op: string, scenario: Scenario): Outcome {
  const cols = TABLE[op]!.trim().split(/\s+/);
  const c = cols[SCENARIOS.indexOf(scenario)];
  return c === 'o' ? 'ok' : c === 'D' ? 'denied' : 'hidden';
}

function outcomeOf(err: unknown): Outcome {
  if (!(err instanceof StorageError)) throw err;
  if (err.code === 'PERMISSION_DENIED') return 'denied';
  if (err.code === 'NOT_FOUND' || (err.code === 'FAILED_PRECONDITION' && err.reason === 'parent-missing'))
    return 'hidden';
  throw err;
}

const drivers: [string, () => Promise<Driver>][] = [
  ['memory', async () => createMemoryDriver()],
  ['posix', async () => createPosixDriver({ root: await tempRoot('perm') })],
];

describe.each(drivers)('permissions on %s', (_name, make) => {
  let system: StorageProvider;
  let identity: StaticIdentitySource;
  let n = 0;

  beforeAll(async () => {
    identity = await StaticIdentitySource.create({
      groups: [{ id: 'g1', name: 'Team' }],
      users: [
        { id: 'u', username: 'u', groups: ['g1'] },
        { id: 'alan', username: 'alan', createSpaces: true },
        { id: 'mary', username: 'mary' },
        { id: 'admin', username: 'admin', admin: true },
        { id: 'eve', username: 'eve' },
      ],
    });
    system = new StorageProvider({ drivers: await make(), identity });
    return () => system.close();
  });

  /** A project space with shared/ holding files and a version, and u's grants per scenario. */
  async function arrange(scenario: Scenario): Promise<{ sp: Space; versionKey: string }> {
    const sp = await system.createSpace({ type: 'project', name: `perm ${++n}` });
    const at = (p: string) => ({ space: sp.id, path: p });
    await system.mkdir(at('shared'));
    await system.write(at('shared/f.txt'), 'v1');
    await system.write(at('shared/f.txt'), 'v2');
    for (const f of ['del.txt', 'mv.txt', 'lk.txt']) await system.write(at(`shared/${f}`), 'x');
    await system.write(at('outside.txt'), 'root file');
    const grant = (role: keyof typeof ROLES, extra: Partial<Grant> = {}): Grant => ({
      grantee: { type: 'user', id: 'u' },
      permissions: fromLetters(ROLES[role]),
      ...extra,
    });
    switch (scenario) {
      case 'none':
        break;
      case 'viewer':
      case 'uploader':
      case 'editor':
      case 'manager':
        await system.setGrant(at('shared'), grant(scenario));
        break;
      case 'group-editor':
        await system.setGrant(at('shared'), { ...grant('editor'), grantee: { type: 'group', id: 'g1' } });
        break;
      case 'inherited-editor':
        await system.setGrant(at(''), grant('editor'));
        break;
      case 'deny':
        await system.setGrant(at(''), grant('editor'));
        await system.setGrant(at('shared'), { ...grant('viewer'), deny: true });
        break;
      case 'group-deny':
        await system.setGrant(at(''), grant('editor'));
        await system.setGrant(at('shared'), {
          grantee: { type: 'group', id: 'g1' },
          permissions: fromLetters(''),
          deny: true,
        });
        break;
      case 'expired':
        await system.setGrant(at('shared'), grant('editor', { expires: Date.now() - 1000 }));
        break;
    }
    const [v] = await system.listVersions(at('shared/f.txt'));
    return { sp, versionKey: v!.key };
  }

  const OPS: Record<string, (u: StorageProvider, sp: Space, versionKey: string) => Promise<unknown>> = {
    stat: (u, sp) => u.stat({ space: sp.id, path: 'shared/f.txt' }),
    list: async (u, sp) => {
      for await (const _ of u.list({ space: sp.id, path: 'shared' })) void _;
    },
    read: async (u, sp) => collect((await u.read({ space: sp.id, path: 'shared/f.txt' })).body!),
    overwrite: (u, sp) => u.write({ space: sp.id, path: 'shared/f.txt' }, 'v3'),
    create: (u, sp) => u.write({ space: sp.id, path: 'shared/new.txt' }, 'new'),
    mkdir: (u, sp) => u.mkdir({ space: sp.id, path: 'shared/sub' }),
    delete: (u, sp) => u.delete({ space: sp.id, path: 'shared/del.txt' }),
    move: (u, sp) =>
      u.move({ space: sp.id, path: 'shared/mv.txt' }, { space: sp.id, path: 'shared/mv2.txt' }),
    copy: (u, sp) => u.copy({ space: sp.id, path: 'shared/f.txt' }, { space: sp.id, path: 'shared/cp.txt' }),
    metadata: (u, sp) => u.setMetadata({ space: sp.id, path: 'shared/f.txt' }, { k: 'v' }),
    favorite: (u, sp) => u.setFavorite({ space: sp.id, path: 'shared/f.txt' }, true),
    listGrants: (u, sp) => u.listGrants({ space: sp.id, path: 'shared' }),
    addGrant: (u, sp) =>
      u.setGrant(
        { space: sp.id, path: 'shared' },
        { grantee: { type: 'user', id: 'friend' }, permissions: fromLetters('s') },
      ),
    listVersions: (u, sp) => u.listVersions({ space: sp.id, path: 'shared/f.txt' }),
    restoreVersion: (u, sp, key) => u.restoreVersion({ space: sp.id, path: 'shared/f.txt' }, key),
    lock: (u, sp) => u.setLock({ space: sp.id, path: 'shared/lk.txt' }, { lockId: 'l', type: 'exclusive' }),
    quota: (u, sp) => u.getQuota({ space: sp.id, path: 'shared/f.txt' }),
    listTrash: async (u, sp) => {
      for await (const _ of u.listTrash(sp.id)) void _;
    },
  };

  it.each(SCENARIOS)('every operation as %s', async (scenario) => {
    const { sp, versionKey } = await arrange(scenario);
    const u = await system.as('u');
    const got: Record<string, Outcome> = {};
    const want: Record<string, Outcome> = {};
    for (const [op, run] of Object.entries(OPS)) {
      want[op] = expected(op, scenario);
      try {
        await run(u, sp, versionKey);
        got[op] = 'ok';
      } catch (err) {
        got[op] = outcomeOf(err);
      }
    }
    expect(got).toEqual(want);
    // Denied or hidden operations changed nothing.
    const at = (p: string) => ({ space: sp.id, path: p });
    const present = async (p: string) =>
      system.stat(at(p)).then(
        () => true,
        () => false,
      );
    if (want.delete !== 'ok') expect(await present('shared/del.txt')).toBe(true);
    if (want.move !== 'ok') expect(await present('shared/mv2.txt')).toBe(false);
    if (want.create !== 'ok') expect(await present('shared/new.txt')).toBe(false);
    if (want.addGrant !== 'ok')
      expect((await system.listGrants(at('shared'))).some((g) => g.grantee.id === 'friend')).toBe(false);
    // The root file outside shared/ follows the root grants only.
    const rootVisible = await u.stat(at('outside.txt')).then(
      () => true,
      () => false,
    );
    expect(rootVisible).toBe(['inherited-editor', 'deny', 'group-deny'].includes(scenario));
  });

  it('reports permissions on what a user sees, and hides what is denied from listings', async () => {
    const sp = await system.createSpace({ type: 'project', name: `perm ${++n}` });
    const at = (p: string) => ({ space: sp.id, path: p });
    await system.mkdir(at('open'));
    await system.mkdir(at('secret'));
    await system.write(at('open/a.txt'), 'a');
    await system.setGrant(at(''), {
      grantee: { type: 'user', id: 'u' },
      permissions: fromLetters(ROLES.viewer),
    });
    await system.setGrant(at('secret'), {
      grantee: { type: 'user', id: 'u' },
      permissions: fromLetters(''),
      deny: true,
    });
    await system.setGrant(at('open'), {
      grantee: { type: 'user', id: 'u' },
      permissions: fromLetters(ROLES.editor),
    });
    const u = await system.as('u');
    const names: string[] = [];
    for await (const e of u.list(at(''))) names.push(e.name);
    expect(names.sort()).toEqual(['open']);
    const open = await u.stat(at('open'));
    expect(open.permissions?.delete).toBe(true);
    const root = await u.stat(at(''));
    expect(root.permissions?.delete).toBe(false);
    expect(root.permissions?.initiateFileDownload).toBe(true);
    expect(root.grants).toBeUndefined();
    const listed: string[] = [];
    for await (const e of u.list(at('open'))) listed.push(`${e.name}:${e.permissions?.initiateFileUpload}`);
    expect(listed).toEqual(['a.txt:true']);
    await expect(u.copy(at(''), at('open/everything'))).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
  });

  it('keeps a deny for what is below it, whatever is granted further down (stat and list agree)', async () => {
    const sp = await system.createSpace({ type: 'project', name: `perm ${++n}` });
    const at = (p: string) => ({ space: sp.id, path: p });
    await system.mkdir(at('denied/granted/deeper'), { parents: true });
    await system.write(at('denied/granted/f.txt'), 'f');
    const to = (letters: string, deny = false) => ({
      grantee: { type: 'user' as const, id: 'u' },
      permissions: fromLetters(letters),
      ...(deny && { deny }),
    });
    await system.setGrant(at(''), to(ROLES.editor));
    await system.setGrant(at('denied'), to('', true));
    await system.setGrant(at('denied/granted'), to(ROLES.editor));
    await system.setGrant(at('denied/granted/deeper'), to(ROLES.manager));
    const u = await system.as('u');
    for (const p of ['denied', 'denied/granted', 'denied/granted/f.txt', 'denied/granted/deeper']) {
      await expect(u.stat(at(p)), p).rejects.toMatchObject({ code: 'NOT_FOUND' });
    }
    await expect(u.list(at('denied/granted')).next()).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(u.read(at('denied/granted/f.txt'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const names: string[] = [];
    for await (const e of u.list(at(''))) names.push(e.name);
    expect(names).toEqual([]);
  });

  it('never lets a user grant more than they hold', async () => {
    const sp = await system.createSpace({ type: 'project', name: `perm ${++n}` });
    const at = (p: string) => ({ space: sp.id, path: p });
    // An editor who may also share (G) but not delete.
    const sharer = fromLetters(`${ROLES.viewer}G`);
    await system.setGrant(at(''), { grantee: { type: 'user', id: 'u' }, permissions: sharer });
    const u = await system.as('u');
    await u.setGrant(at(''), {
      grantee: { type: 'user', id: 'mary' },
      permissions: fromLetters(ROLES.viewer),
    });
    await expect(
      u.setGrant(at(''), { grantee: { type: 'user', id: 'eve' }, permissions: fromLetters(ROLES.editor) }),
    ).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await expect(u.denyGrant(at(''), { type: 'user', id: 'mary' })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    const grants = await system.listGrants(at(''));
    expect(grants.map((g) => g.grantee.id).sort()).toEqual(['mary', 'u']);
    expect(grants.find((g) => g.grantee.id === 'mary')!.creator).toBe('u');
  });

  it('lets only the lock holder (or anyone, for shared locks) unlock', async () => {
    const sp = await system.createSpace({ type: 'project', name: `perm ${++n}` });
    const at = (p: string) => ({ space: sp.id, path: p });
    await system.write(at('doc.odt'), 'x');
    for (const id of ['u', 'mary']) {
      await system.setGrant(at(''), {
        grantee: { type: 'user', id },
        permissions: fromLetters(ROLES.editor),
      });
    }
    const u = await system.as('u');
    const mary = await system.as('mary');
    const lock = await u.setLock(at('doc.odt'), { lockId: 'office-1', type: 'exclusive', appName: 'Office' });
    expect(lock.user).toBe('u');
    await expect(mary.unlock(at('doc.odt'), 'office-1')).rejects.toMatchObject({ code: 'LOCKED' });
    await expect(mary.write(at('doc.odt'), 'mary')).rejects.toMatchObject({ code: 'LOCKED' });
    await u.unlock(at('doc.odt'), 'office-1');
    await mary.setLock(at('doc.odt'), { lockId: 'shared-1', type: 'shared' });
    await u.unlock(at('doc.odt'), 'shared-1');
  });

  it('tells the Alan and Mary story: a project space outlives the person who made it', async () => {
    const alan = await system.as('alan');
    const project = await alan.createSpace({ type: 'project', name: `Project ${++n}` });
    expect(project.owner).toBeUndefined();
    const at = (p: string) => ({ space: project.id, path: p });
    await alan.write(at('plan.md'), '# the plan');
    await alan.mkdir(at('data'));
    await alan.write(at('data/results.csv'), 'a,b\n1,2\n');
    await alan.setGrant(at(''), {
      grantee: { type: 'user', id: 'mary' },
      permissions: fromLetters(ROLES.manager),
    });
    const alanHome = await alan.personalSpace();
    await alan.write({ space: alanHome.id, path: 'cv.txt' }, 'alan');

    // Alan leaves: gone from the identity source, offboarded by an admin.
    identity.remove('alan');
    await expect(system.as('alan')).rejects.toMatchObject({ code: 'UNAUTHENTICATED' });
    const admin = await system.as('admin');
    await admin.offboardUser('alan');

    // Mary still manages the project, its files are all there, and she can bring in others.
    const mary = await system.as('mary');
    const visible: string[] = [];
    for await (const s of mary.listSpaces()) visible.push(s.id);
    expect(visible).toContain(project.id);
    expect((await collect((await mary.read(at('data/results.csv'))).body!)).toString()).toBe('a,b\n1,2\n');
    await mary.setGrant(at(''), {
      grantee: { type: 'user', id: 'u' },
      permissions: fromLetters(ROLES.editor),
    });
    await mary.updateSpace(project.id, { name: 'Project, continued' });
    await mary.write(at('plan.md'), '# the plan, v2');
    // Alan's personal space is disabled, not deleted: an admin can bring it back.
    const home = await system.getSpace(alanHome.id);
    expect(home.disabled).toBe(true);
    await expect(mary.getSpace(alanHome.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await admin.updateSpace(alanHome.id, { disabled: false });
    expect(
      (await collect((await system.read({ space: alanHome.id, path: 'cv.txt' })).body!)).toString(),
    ).toBe('alan');
    await identity.add({ id: 'alan', username: 'alan', createSpaces: true });
  });

  it('controls who creates, sees, changes, disables and deletes spaces', async () => {
    const mary = await system.as('mary');
    const admin = await system.as('admin');
    const u = await system.as('u');
    await expect(mary.createSpace({ type: 'project', name: 'not allowed' })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    await expect(
      u.createSpace({ type: 'personal', name: 'x', owner: { id: 'mary', username: 'mary' } }),
    ).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    // The user named as a project space's owner manages it, as its creator does.
    const owned = await system.createSpace({
      type: 'project',
      name: `Owned ${++n}`,
      owner: { id: 'mary', username: 'mary' },
    });
    expect((await mary.getSpace(owned.id)).id).toBe(owned.id);
    await mary.setGrant(
      { space: owned.id },
      { grantee: { type: 'user', id: 'u' }, permissions: fromLetters(ROLES.viewer) },
    );
    expect((await u.getSpace(owned.id)).id).toBe(owned.id);
    // Only an admin names someone else; an unknown owner is refused.
    const alan = await system.as('alan');
    await expect(
      alan.createSpace({ type: 'project', name: `For mary ${++n}`, owner: { id: 'mary', username: 'mary' } }),
    ).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await expect(
      system.createSpace({
        type: 'project',
        name: `Ghost ${++n}`,
        owner: { id: 'ghost', username: 'ghost' },
      }),
    ).rejects.toMatchObject({ code: 'INVALID_ARGUMENT' });
    const sp = await admin.createSpace({ type: 'project', name: `Managed ${++n}` });
    await admin.setGrant(
      { space: sp.id },
      { grantee: { type: 'user', id: 'mary' }, permissions: fromLetters(ROLES.manager) },
    );
    await admin.setGrant(
      { space: sp.id },
      { grantee: { type: 'user', id: 'u' }, permissions: fromLetters(ROLES.editor) },
    );
    const eve = await system.as('eve');
    const eveSees: string[] = [];
    for await (const s of eve.listSpaces()) eveSees.push(s.id);
    expect(eveSees).not.toContain(sp.id);
    await expect(eve.getSpace(sp.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(u.updateSpace(sp.id, { name: 'by an editor' })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    await expect(mary.updateSpace(sp.id, { quota: 5 })).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await admin.updateSpace(sp.id, { quota: 1_000_000 });
    await mary.updateSpace(sp.id, { description: 'ours' });
    await expect(mary.deleteSpace(sp.id)).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    await expect(u.updateSpace(sp.id, { disabled: true })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    await mary.updateSpace(sp.id, { disabled: true });
    // Disabled: gone for editors, still there (disabled) for managers and admins.
    await expect(u.stat({ space: sp.id })).rejects.toMatchObject({ code: 'NOT_FOUND' });
    const uSees: string[] = [];
    for await (const s of u.listSpaces({ includeDisabled: true })) uSees.push(s.id);
    expect(uSees).not.toContain(sp.id);
    await expect(mary.stat({ space: sp.id })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
      reason: 'space-disabled',
    });
    await mary.deleteSpace(sp.id);
    await expect(system.getSpace(sp.id)).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('keeps at least one manager on a project space', async () => {
    const alan = await system.as('alan');
    const sp = await alan.createSpace({ type: 'project', name: `Managers ${++n}` });
    const root = { space: sp.id };
    await expect(alan.removeGrant(root, { type: 'user', id: 'alan' })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
    await expect(
      alan.setGrant(root, { grantee: { type: 'user', id: 'alan' }, permissions: fromLetters(ROLES.viewer) }),
    ).rejects.toMatchObject({ code: 'FAILED_PRECONDITION' });
    await alan.setGrant(root, {
      grantee: { type: 'user', id: 'mary' },
      permissions: fromLetters(ROLES.manager),
    });
    await alan.removeGrant(root, { type: 'user', id: 'alan' });
    const mary = await system.as('mary');
    await expect(mary.removeGrant(root, { type: 'user', id: 'mary' })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
    expect((await system.listGrants(root)).map((g) => g.grantee.id)).toEqual(['mary']);
  });

  it('creates a personal space on first use that only its owner sees', async () => {
    const mary = await system.as('mary');
    const home = await mary.personalSpace();
    expect(home.alias).toBe('personal/mary');
    expect(home.owner?.id).toBe('mary');
    expect((await mary.personalSpace()).id).toBe(home.id);
    await mary.write({ space: home.id, path: 'diary.txt' }, 'dear diary');
    const root = await mary.stat({ space: home.id });
    expect(root.permissions?.addGrant).toBe(true);
    const eve = await system.as('eve');
    await expect(eve.stat({ space: home.id, path: 'diary.txt' })).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    await expect(
      eve.read({ resourceId: (await mary.stat({ space: home.id, path: 'diary.txt' })).id }),
    ).rejects.toMatchObject({
      code: 'NOT_FOUND',
    });
    // Sharing one file with Eve lets her reach exactly that file, by id.
    await mary.setGrant(
      { space: home.id, path: 'diary.txt' },
      { grantee: { type: 'user', id: 'eve' }, permissions: fromLetters(ROLES.viewer) },
    );
    const diary = await mary.stat({ space: home.id, path: 'diary.txt' });
    expect((await collect((await eve.read({ resourceId: diary.id })).body!)).toString()).toBe('dear diary');
    await expect(eve.list({ space: home.id }).next()).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  /** A project space where u is an editor (plus `extra` letters) on the root. */
  async function editorSpace(
    extra = '',
  ): Promise<{ sp: Space; at: (p: string) => { space: string; path: string } }> {
    const sp = await system.createSpace({ type: 'project', name: `perm ${++n}` });
    await system.setGrant(
      { space: sp.id },
      { grantee: { type: 'user', id: 'u' }, permissions: fromLetters(ROLES.editor + extra) },
    );
    return { sp, at: (p: string) => ({ space: sp.id, path: p }) };
  }

  const denyU = (): Grant => ({
    grantee: { type: 'user', id: 'u' },
    permissions: fromLetters(''),
    deny: true,
  });

  it('shows each user only the trash they could see before it was deleted', async () => {
    const { sp, at } = await editorSpace('P');
    await system.write(at('open.txt'), 'open');
    await system.write(at('private.txt'), 'private');
    await system.setGrant(at('private.txt'), denyU());
    await system.mkdir(at('secret'));
    await system.write(at('secret/s.txt'), 'secret');
    await system.setGrant(at('secret'), denyU());
    await system.mkdir(at('box'));
    await system.write(at('box/a.txt'), 'a');
    await system.write(at('box/hidden.txt'), 'hidden');
    await system.setGrant(at('box/hidden.txt'), denyU());
    const key = async (p: string) => (await system.stat(at(p))).id.opaqueId;
    const keys = {
      open: await key('open.txt'),
      private: await key('private.txt'),
      secret: await key('secret/s.txt'),
      box: await key('box'),
    };
    for (const p of ['open.txt', 'private.txt', 'secret/s.txt', 'box']) await system.delete(at(p));

    const u = await system.as('u');
    const paths = async (who: StorageProvider, key?: string) => {
      const out: string[] = [];
      for await (const item of who.listTrash(sp.id, key ? { key } : undefined)) out.push(item.path);
      return out.sort();
    };
    expect(await paths(u)).toEqual(['/box', '/open.txt']);
    expect(await paths(u, keys.box)).toEqual(['/box/a.txt']);
    expect(await paths(system)).toEqual(['/box', '/open.txt', '/private.txt', '/secret/s.txt']);
    // Items u may not see cannot be restored, purged or looked into, and say only "not found".
    const nothing = { code: 'NOT_FOUND', message: 'not found', reason: undefined };
    await expect(u.restoreTrash(sp.id, keys.private)).rejects.toMatchObject(nothing);
    await expect(u.restoreTrash(sp.id, keys.secret)).rejects.toMatchObject(nothing);
    await expect(u.restoreTrash(sp.id, `${keys.box}/hidden.txt`)).rejects.toMatchObject(nothing);
    await expect(u.restoreTrash(sp.id, 'no-such-item')).rejects.toMatchObject(nothing);
    await expect(u.purgeTrash(sp.id, keys.secret)).rejects.toMatchObject(nothing);
    // Grants on items are shown to those who may list grants only.
    for await (const item of u.listTrash(sp.id)) expect(item.grants).toBeUndefined();
    const listed: Record<string, number | undefined> = {};
    for await (const item of system.listTrash(sp.id)) listed[item.path] = item.grants?.length;
    expect(listed['/private.txt']).toBe(1);
    // What u sees, u restores; emptying the trash empties u's part of it.
    const back = await u.restoreTrash(sp.id, keys.open);
    expect(back.id.opaqueId).toBe(keys.open);
    expect((await collect((await u.read(at('open.txt'))).body!)).toString()).toBe('open');
    await u.purgeTrash(sp.id);
    expect(await paths(system)).toEqual(['/private.txt', '/secret/s.txt']);
    // A file whose folder is gone is left to managers.
    await system.delete(at('secret'));
    await system.removeGrant(at(''), { type: 'user', id: 'u' });
    await system.setGrant(at(''), {
      grantee: { type: 'user', id: 'u' },
      permissions: fromLetters(ROLES.manager),
    });
    expect(await paths(u)).toEqual(['/private.txt', '/secret', '/secret/s.txt']);
  });

  it('judges trash items by the folder they left, not by a folder recreated under its name', async () => {
    const { sp, at } = await editorSpace();
    await system.mkdir(at('private'));
    await system.setGrant(at('private'), denyU());
    const secret = await system.write(at('private/secret.txt'), 'TOP SECRET');
    await system.delete(at('private/secret.txt'));
    await system.delete(at('private'));
    const u = await system.as('u');
    const paths = async () => {
      const out: string[] = [];
      for await (const item of u.listTrash(sp.id)) out.push(item.path);
      return out.sort();
    };
    expect(await paths()).toEqual([]);
    await u.mkdir(at('private'));
    expect(await paths()).toEqual([]);
    await expect(u.restoreTrash(sp.id, secret.id.opaqueId)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await expect(u.restoreTrash(sp.id, secret.id.opaqueId, { target: at('mine.txt') })).rejects.toMatchObject(
      {
        code: 'NOT_FOUND',
      },
    );
    // Emptying the trash leaves what u could not see: the denied folder and what was in it.
    await system.removeGrant(at(''), { type: 'user', id: 'u' });
    await system.setGrant(at(''), {
      grantee: { type: 'user', id: 'u' },
      permissions: fromLetters(`${ROLES.editor}P`),
    });
    await expect(u.purgeTrash(sp.id, secret.id.opaqueId)).rejects.toMatchObject({ code: 'NOT_FOUND' });
    await u.purgeTrash(sp.id);
    const left: string[] = [];
    for await (const item of system.listTrash(sp.id)) left.push(item.path);
    expect(left.sort()).toEqual(['/private', '/private/secret.txt']);
  });

  it('expires for a user only the trash items that user may purge', async () => {
    const { sp, at } = await editorSpace('P');
    await system.write(at('open.txt'), 'open');
    await system.write(at('private.txt'), 'private');
    await system.setGrant(at('private.txt'), denyU());
    for (const p of ['open.txt', 'private.txt']) await system.delete(at(p));
    const u = await system.as('u');
    const left = async () => {
      const out: string[] = [];
      for await (const item of system.listTrash(sp.id)) out.push(item.path);
      return out.sort();
    };
    expect(await u.expireTrash(Date.now() + 1000, sp.id)).toBe(1);
    expect(await left()).toEqual(['/private.txt']);
    // Every space u sees (other tests' too): still not what u may not see; the system's sweep
    // takes that.
    await u.expireTrash(Date.now() + 1000);
    expect(await left()).toEqual(['/private.txt']);
    expect(await system.expireTrash(Date.now() + 1000)).toBeGreaterThanOrEqual(1);
    expect(await left()).toEqual([]);
  });

  it('restores elsewhere only what the user may move, and shows names only without getPath', async () => {
    const { sp, at } = await editorSpace();
    await system.mkdir(at('other'));
    await system.mkdir(at('mine'));
    const report = await system.write(at('other/report.txt'), 'report');
    // u may see, list and restore trash at the root but not read or move; editor in mine/.
    await system.setGrant(at(''), { grantee: { type: 'user', id: 'u' }, permissions: fromLetters('sltT') });
    await system.setGrant(at('mine'), {
      grantee: { type: 'user', id: 'u' },
      permissions: fromLetters(ROLES.editor),
    });
    await system.delete(at('other/report.txt'));
    const u = await system.as('u');
    const items = [];
    for await (const item of u.listTrash(sp.id)) items.push(item);
    expect(items.map((i) => [i.path, i.parentId])).toEqual([['/report.txt', undefined]]);
    await expect(u.restoreTrash(sp.id, report.id.opaqueId)).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    await expect(
      u.restoreTrash(sp.id, report.id.opaqueId, { target: at('mine/report.txt') }),
    ).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await expect(system.stat(at('mine/report.txt'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
  });

  it('keeps a session inside its authorisation', async () => {
    const u = await system.as('u');
    const denied = { code: 'PERMISSION_DENIED' };
    expect(() => u.drivers).toThrow(expect.objectContaining(denied));
    expect(() => u.identity).toThrow(expect.objectContaining(denied));
    expect(() => u.driverFor('')).toThrow(expect.objectContaining(denied));
    expect(() => u.as('admin')).toThrow(expect.objectContaining(denied));
    expect(() => u.resolve({ space: 'x' })).toThrow(expect.objectContaining(denied));
    expect(() => u.close()).toThrow(expect.objectContaining(denied));
    // The system provider still works: the session did not close it.
    expect((await system.as('u')).principal?.userId).toBe('u');
  });

  it('refuses to replace what a user cannot see, and says the same as for what is missing', async () => {
    const { at } = await editorSpace();
    await system.write(at('hidden.txt'), 'keep me');
    await system.setGrant(at('hidden.txt'), denyU());
    await system.mkdir(at('secret'));
    await system.write(at('secret/inner.txt'), 'inner');
    await system.setGrant(at('secret'), denyU());
    await system.write(at('mine.txt'), 'mine');
    const u = await system.as('u');
    await expect(u.write(at('hidden.txt'), 'replaced')).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    await expect(u.move(at('mine.txt'), at('hidden.txt'), { overwrite: true })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    await expect(u.copy(at('mine.txt'), at('hidden.txt'), { overwrite: true })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    await expect(u.mkdir(at('hidden.txt/sub'), { parents: true })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    // Inside a folder u cannot see, everything reads as if the folder did not exist.
    const missingParent = { code: 'FAILED_PRECONDITION', reason: 'parent-missing' };
    await expect(u.write(at('secret/inner.txt'), 'x')).rejects.toMatchObject(missingParent);
    await expect(u.write(at('nowhere/inner.txt'), 'x')).rejects.toMatchObject(missingParent);
    await expect(u.mkdir(at('secret/sub'), { parents: true })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    expect((await collect((await system.read(at('hidden.txt'))).body!)).toString()).toBe('keep me');
    expect((await collect((await system.read(at('secret/inner.txt'))).body!)).toString()).toBe('inner');
    await expect(system.stat(at('secret/sub'))).rejects.toMatchObject({ code: 'NOT_FOUND' });
    // Hidden and missing read alike, by path and by id, in calls and in listings.
    const failure = (p: Promise<unknown>) =>
      p.then(
        () => {
          throw new Error('expected a failure');
        },
        (e: StorageError) => e.toJSON(),
      );
    const missing = await failure(u.stat(at('missing.txt')));
    expect(await failure(u.stat(at('hidden.txt')))).toEqual(missing);
    const id = (await system.stat(at('secret/inner.txt'))).id;
    expect(await failure(u.stat({ resourceId: id }))).toEqual(missing);
    expect(await failure(u.list(at('secret')).next())).toEqual(missing);
  });

  it('keeps a non-shared lock its holder’s, even for someone who knows its id', async () => {
    const { at } = await editorSpace();
    for (const id of ['mary']) {
      await system.setGrant(at(''), {
        grantee: { type: 'user', id },
        permissions: fromLetters(ROLES.editor),
      });
    }
    await system.write(at('doc.odt'), 'v1');
    const u = await system.as('u');
    const mary = await system.as('mary');
    await u.setLock(at('doc.odt'), { lockId: 'L1', type: 'exclusive' });
    const locked = { code: 'LOCKED' };
    await expect(mary.setLock(at('doc.odt'), { lockId: 'L1', type: 'exclusive' })).rejects.toMatchObject(
      locked,
    );
    await expect(mary.refreshLock(at('doc.odt'), { lockId: 'L1', type: 'exclusive' })).rejects.toMatchObject(
      locked,
    );
    await expect(mary.write(at('doc.odt'), 'mary', { lockId: 'L1' })).rejects.toMatchObject(locked);
    await expect(mary.delete(at('doc.odt'), { lockId: 'L1' })).rejects.toMatchObject(locked);
    await expect(mary.setMetadata(at('doc.odt'), { k: 'v' }, { lockId: 'L1' })).rejects.toMatchObject(locked);
    await expect(mary.unlock(at('doc.odt'), 'L1')).rejects.toMatchObject(locked);
    expect((await system.getLock(at('doc.odt')))?.user).toBe('u');
    await u.write(at('doc.odt'), 'u', { lockId: 'L1' });
    await u.unlock(at('doc.odt'), 'L1');
    // A shared lock refreshed by someone else stays its holder's.
    await u.setLock(at('doc.odt'), { lockId: 'S1', type: 'shared', expires: Date.now() + 60_000 });
    const later = Date.now() + 120_000;
    const refreshed = await mary.refreshLock(at('doc.odt'), {
      lockId: 'S1',
      type: 'exclusive',
      expires: later,
    });
    expect(refreshed).toMatchObject({ lockId: 'S1', type: 'shared', user: 'u', expires: later });
    await mary.write(at('doc.odt'), 'mary', { lockId: 'S1' });
  });

  it('lets nobody take another user’s personal space, or bring their own back once disabled', async () => {
    const eve = await system.as('eve');
    // Asking for someone else's alias gets one's own personal space.
    const mine = await eve.createSpace({
      type: 'personal',
      name: 'mine',
      alias: 'personal/mary',
      owner: { id: 'eve', username: 'eve' },
    });
    expect(mine.alias).toBe('personal/eve');
    expect(mine.owner?.id).toBe('eve');
    await expect(
      eve.createSpace({
        type: 'personal',
        name: 'x',
        id: 'chosen-id',
        owner: { id: 'eve', username: 'eve' },
      }),
    ).rejects.toMatchObject({ code: 'PERMISSION_DENIED' });
    const mary = await system.as('mary');
    expect((await mary.personalSpace()).owner?.id).toBe('mary');
    // An admin disables eve's space (offboarding): eve cannot enable it again, nor disable it herself.
    const admin = await system.as('admin');
    await expect(eve.updateSpace(mine.id, { disabled: true })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    await admin.updateSpace(mine.id, { disabled: true });
    await expect(eve.updateSpace(mine.id, { disabled: false })).rejects.toMatchObject({
      code: 'PERMISSION_DENIED',
    });
    expect((await system.getSpace(mine.id)).disabled).toBe(true);
    await admin.updateSpace(mine.id, { disabled: false });
  });

  it('counts only lasting managers when keeping one on a project space', async () => {
    const alan = await system.as('alan');
    const sp = await alan.createSpace({ type: 'project', name: `Lasting ${++n}` });
    const root = { space: sp.id };
    const alanGrant = (extra: Partial<Grant> = {}): Grant => ({
      grantee: { type: 'user', id: 'alan' },
      permissions: fromLetters(ROLES.manager),
      ...extra,
    });
    await expect(alan.setGrant(root, alanGrant({ expires: Date.now() + 3_600_000 }))).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
    // A manager grant to a user whose group is denied does not count either.
    await alan.setGrant(root, {
      grantee: { type: 'user', id: 'u' },
      permissions: fromLetters(ROLES.manager),
    });
    await alan.setGrant(root, {
      grantee: { type: 'group', id: 'g1' },
      permissions: fromLetters(''),
      deny: true,
    });
    await expect(alan.removeGrant(root, { type: 'user', id: 'alan' })).rejects.toMatchObject({
      code: 'FAILED_PRECONDITION',
    });
    expect((await system.listGrants(root)).map((g) => g.grantee.id).sort()).toEqual(['alan', 'g1', 'u']);
  });
});
