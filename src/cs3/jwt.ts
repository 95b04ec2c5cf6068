/**
 * HS256 JSON Web Tokens, as Reva uses them: the access token in `x-access-token` (claims `user` and
 * `scope`, Go-JSON shaped) and the transfer tokens of the data plane. Only HS256 is accepted; the
 * secret never appears in an error or a log line.
 *
 * @module
 */
import { createHmac, timingSafeEqual } from 'node:crypto';
import { StorageError } from '../core/errors.js';

/** Registered claims (seconds since epoch) plus whatever the token carries. */
export interface JwtClaims {
  exp?: number;
  iat?: number;
  nbf?: number;
  iss?: string;
  aud?: string | string[];
  [claim: string]: unknown;
}

/** Options for {@link verifyJwt}. */
export interface VerifyOptions {
  /** Clock skew tolerated on `exp`, `nbf` and `iat`, in seconds (Reva: 5). */
  leewaySeconds?: number;
  /** Current time in ms (tests). */
  now?: number;
  /** When given, `aud` must contain it. */
  audience?: string;
}

const HEADER = base64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }));

function base64url(s: string | Buffer): string {
  return Buffer.from(s).toString('base64url');
}

function mac(input: string, secret: string): Buffer {
  return createHmac('sha256', secret).update(input).digest();
}

/** Sign claims with HS256. */
export function signJwt(claims: JwtClaims, secret: string): string {
  if (!secret) throw new StorageError('INVALID_ARGUMENT', 'a JWT secret is required');
  const body = `${HEADER}.${base64url(JSON.stringify(claims))}`;
  return `${body}.${mac(body, secret).toString('base64url')}`;
}

/**
 * Verify an HS256 token and return its claims: UNAUTHENTICATED when it is malformed, signed with
 * another algorithm or secret, expired, not yet valid, or for another audience. A token must expire.
 */
export function verifyJwt(token: string, secret: string, opts: VerifyOptions = {}): JwtClaims {
  const bad = (why: string) => new StorageError('UNAUTHENTICATED', `invalid token: ${why}`);
  if (typeof token !== 'string' || token.length > 16_384) throw bad('malformed');
  const parts = token.split('.');
  if (parts.length !== 3) throw bad('malformed');
  const [h, p, s] = parts as [string, string, string];
  let header: unknown;
  let claims: unknown;
  try {
    header = JSON.parse(Buffer.from(h, 'base64url').toString('utf8'));
    claims = JSON.parse(Buffer.from(p, 'base64url').toString('utf8'));
  } catch {
    throw bad('malformed');
  }
  if (!header || typeof header !== 'object' || (header as { alg?: unknown }).alg !== 'HS256') {
    throw bad('only HS256 is accepted');
  }
  const expected = mac(`${h}.${p}`, secret);
  const given = Buffer.from(s, 'base64url');
  if (given.length !== expected.length || !timingSafeEqual(given, expected)) throw bad('bad signature');
  if (!claims || typeof claims !== 'object' || Array.isArray(claims)) throw bad('malformed claims');
  const c = claims as JwtClaims;
  const now = (opts.now ?? Date.now()) / 1000;
  const leeway = opts.leewaySeconds ?? 5;
  if (typeof c.exp !== 'number') throw bad('no expiry');
  if (now > c.exp + leeway) throw bad('expired');
  if (typeof c.nbf === 'number' && now + leeway < c.nbf) throw bad('not valid yet');
  if (typeof c.iat === 'number' && now + leeway < c.iat) throw bad('issued in the future');
  if (opts.audience !== undefined) {
    const aud = Array.isArray(c.aud) ? c.aud : [c.aud];
    if (!aud.includes(opts.audience)) throw bad('wrong audience');
  }
  return c;
}

/** The user a Reva access token names (its `user` claim, Go `encoding/json` of a CS3 User). */
export interface TokenUser {
  opaqueId: string;
  idp?: string;
  username?: string;
  displayName?: string;
  mail?: string;
  groups: string[];
}

/** Read the `user` claim of a Reva token (snake_case keys, enums as integers). */
export function tokenUser(claims: JwtClaims): TokenUser {
  const u = claims.user as Record<string, unknown> | undefined;
  const id = u?.id as Record<string, unknown> | undefined;
  const opaqueId = typeof id?.opaque_id === 'string' ? id.opaque_id : undefined;
  if (!u || !opaqueId) throw new StorageError('UNAUTHENTICATED', 'invalid token: no user');
  const str = (v: unknown) => (typeof v === 'string' && v ? v : undefined);
  const out: TokenUser = {
    opaqueId,
    groups: Array.isArray(u.groups) ? u.groups.filter((g): g is string => typeof g === 'string') : [],
  };
  const idp = str(id?.idp);
  const username = str(u.username);
  const displayName = str(u.display_name);
  const mail = str(u.mail);
  if (idp) out.idp = idp;
  if (username) out.username = username;
  if (displayName) out.displayName = displayName;
  if (mail) out.mail = mail;
  return out;
}

/**
 * Refuse a Reva token whose `scope` claim narrows it (UNAUTHENTICATED): a gateway signs such
 * tokens for a public link (`publicshare:<id>`, with the link's owner as the user), a share
 * (`share:<id>`), one resource (`resourceinfo:<id>`, an app's or a preview's) or a lightweight
 * account (`lightweight`). Stowage does not enforce those scopes, and the user the token names
 * would otherwise get all their rights. A token without a scope, or whose scopes are all the
 * user's own (`user`, role owner: what a gateway mints at login, and {@link mintRevaToken}), is
 * the user's full token.
 */
export function requireFullScope(claims: JwtClaims): void {
  const scope = claims.scope;
  if (scope === undefined || scope === null) return;
  if (typeof scope !== 'object' || Array.isArray(scope))
    throw new StorageError('UNAUTHENTICATED', 'invalid token: its scope is not a map');
  for (const [key, value] of Object.entries(scope as Record<string, unknown>)) {
    const role = (value as { role?: unknown } | null)?.role;
    if (key === 'user' && (role === 1 || role === 'ROLE_OWNER')) continue;
    throw new StorageError(
      'UNAUTHENTICATED',
      `the token is scoped (${printableKey(key)}): only a user's full token is served here, not a public link's, a share's or one resource's`,
    );
  }
}

/** A scope key as an error names it: its kind, without the id after the colon, bounded. */
function printableKey(key: string): string {
  return key
    .split(':', 1)[0]!
    .replace(/[^\w.-]/g, '?')
    .slice(0, 40);
}

/** Options for {@link mintRevaToken}. */
export interface MintOptions {
  /** Lifetime in seconds (Reva's default: 86400). */
  ttlSeconds?: number;
  /** Identity provider, the token's `iss` and the user id's `idp`. */
  idp?: string;
}

/**
 * Mint a Reva-style access token for a user, as a Reva gateway would: `user` (Go-JSON CS3 User),
 * `scope` (`user` with role OWNER on `/`), `aud: ["reva"]`, `iss`, `iat`, `exp`. For tests, the CLI
 * (`stowage token`) and clients that talk to Stowage without a gateway.
 */
export function mintRevaToken(
  user: { id: string; username?: string; displayName?: string; mail?: string; groups?: readonly string[] },
  secret: string,
  opts: MintOptions = {},
): string {
  const now = Math.floor(Date.now() / 1000);
  const idp = opts.idp ?? 'stowage';
  const scopeRef = Buffer.from(JSON.stringify({ path: '/' })).toString('base64');
  return signJwt(
    {
      iss: idp,
      aud: ['reva'],
      iat: now,
      exp: now + (opts.ttlSeconds ?? 86_400),
      user: {
        id: { idp, opaque_id: user.id, type: 1 },
        ...(user.username && { username: user.username }),
        ...(user.mail && { mail: user.mail }),
        ...(user.displayName && { display_name: user.displayName }),
        ...(user.groups?.length && { groups: [...user.groups] }),
      },
      scope: { user: { resource: { decoder: 'json', value: scopeRef }, role: 1 } },
    },
    secret,
  );
}
