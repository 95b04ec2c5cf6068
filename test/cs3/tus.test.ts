/**
 * The state folder of resumable uploads: what it counts against a user's bound, and how it
 * recovers from a state file cut short.
 */
import fs from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { describe, expect, it, vi } from 'vitest';
import { TusUploads, type UploadState } from '../../src/cs3/tus.js';
import { tempRoot } from '../helpers/tmp.js';

const upload = (key: string, extra: Partial<UploadState> = {}): UploadState => ({
  id: TusUploads.idFor(key),
  offset: 0,
  expires: Date.now() + 60_000,
  target: undefined,
  user: 'u',
  ...extra,
});

describe('TusUploads: uploads in progress per user', () => {
  it('does not count an upload again once it ended, even when a read of it was under way', async () => {
    const uploads = new TusUploads(path.join(await tempRoot('tus-count'), 'uploads'));
    await uploads.open();
    const st = await uploads.create(upload('a'), { maxPerUser: 1 });
    expect(uploads.inProgress('u')).toBe(1);
    // A HEAD, or the hourly sweep, has read the state just before the upload ended.
    const readFile = fsp.readFile.bind(fsp);
    let release!: () => void;
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const spy = vi.spyOn(fsp, 'readFile').mockImplementationOnce((async (
      ...args: Parameters<typeof fsp.readFile>
    ) => {
      const text = await readFile(...args);
      await gate;
      return text;
    }) as typeof fsp.readFile);
    const reading = uploads.get(st.id);
    await new Promise((r) => setTimeout(r, 20));
    await uploads.end(st);
    release();
    expect((await reading)?.done).toBeUndefined(); // it saw the upload still in progress
    spy.mockRestore();
    await uploads.get(st.id);
    expect(uploads.inProgress('u')).toBe(0);
    await expect(uploads.create(upload('b'), { maxPerUser: 1 })).resolves.toMatchObject({ user: 'u' });
    await expect(uploads.create(upload('c'), { maxPerUser: 1 })).rejects.toMatchObject({
      code: 'INSUFFICIENT_STORAGE',
    });
    uploads.close();
  });

  it('gives two requests creating the same upload at once the same one', async () => {
    const uploads = new TusUploads(path.join(await tempRoot('tus-same'), 'uploads'));
    await uploads.open();
    await uploads.create(upload('other'), { maxPerUser: 2 });
    const [a, b] = await Promise.allSettled([
      uploads.create(upload('same', { length: 10 }), { maxPerUser: 2 }),
      uploads.create(upload('same'), { maxPerUser: 2 }),
    ]);
    expect([a.status, b.status]).toEqual(['fulfilled', 'fulfilled']);
    expect(a.status === 'fulfilled' && b.status === 'fulfilled' && a.value === b.value).toBe(true);
    expect((await uploads.get(TusUploads.idFor('same')))?.length).toBe(10);
    expect(uploads.inProgress('u')).toBe(2);
    uploads.close();
  });

  it('counts every readable upload at start, and drops one whose state was cut short', async () => {
    const dir = path.join(await tempRoot('tus-sweep'), 'uploads');
    const first = new TusUploads(dir);
    await first.open();
    const ids: string[] = [];
    for (let i = 0; i < 20; i++) ids.push((await first.create(upload(`k${i}`))).id);
    first.close();
    fs.writeFileSync(path.join(dir, `${ids[7]}.json`), ''); // a crash left it empty

    const logged: string[] = [];
    const again = new TusUploads(dir, (m) => logged.push(m));
    await again.open();
    expect(again.inProgress('u')).toBe(19);
    expect(await again.get(ids[7]!)).toBeUndefined();
    expect(fs.existsSync(path.join(dir, `${ids[7]}.bin`))).toBe(false);
    expect(logged.join('\n')).toMatch(/unreadable state/);
    again.close();
  });
});
