import { createCipheriv, createDecipheriv, createHmac, hkdfSync, randomFillSync, timingSafeEqual } from 'node:crypto';

/**
 * What each derived key is for. One secret never keys two jobs: a signature made for
 * the visitor cookie cannot be replayed as a sealed bin or a fingerprint.
 */
export type KeyPurpose = 'visitor-cookie' | 'auth-id' | 'fingerprint' | 'link' | 'cookie-storage' | (string & {});

/** Signing, sealing and keyed hashing under a list of secrets: the first signs, all verify. */
export interface KeyRing {
  /** HMAC-SHA256 of `data` under the purpose's key of the first secret, as base64url. */
  mac(purpose: KeyPurpose, data: string, bytes?: number): string;
  /** `value.signature`; `value` must not contain characters a cookie cannot carry. */
  sign(purpose: KeyPurpose, value: string): string;
  /** The signed value, and whether it was signed by an older secret; `undefined` when forged or malformed. */
  verify(purpose: KeyPurpose, signed: string): { value: string; rotated: boolean } | undefined;
  /** AES-256-GCM under the purpose's key of the first secret, as base64url. */
  seal(purpose: KeyPurpose, plaintext: string): string;
  /** The plaintext, and whether an older secret sealed it; `undefined` when tampered with or malformed. */
  unseal(purpose: KeyPurpose, sealed: string): { plaintext: string; rotated: boolean } | undefined;
}

const SIGNATURE_LENGTH = 43; // base64url of 32 bytes, unpadded
const IV_BYTES = 12;
const TAG_BYTES = 16;
const SEAL_VERSION = 1;

/**
 * Builds a {@link KeyRing} from one secret or a list (rotation: put the new secret first
 * and keep the old ones until the cookies they signed have expired).
 *
 * @example
 * ```ts
 * const keys = createKeyRing([process.env.NEW_SECRET!, process.env.OLD_SECRET!]);
 * const cookie = keys.sign('visitor-cookie', id);
 * keys.verify('visitor-cookie', cookie); // { value: id, rotated: false }
 * ```
 */
export function createKeyRing(secrets: readonly string[]): KeyRing {
  const derived = new Map<string, Buffer[]>();

  // HKDF gives each purpose its own key, so one secret serves every job safely.
  const keysFor = (purpose: string): Buffer[] => {
    let keys = derived.get(purpose);
    if (!keys) {
      keys = secrets.map((secret) => Buffer.from(hkdfSync('sha256', secret, 'visitor-state', purpose, 32)));
      derived.set(purpose, keys);
    }
    return keys;
  };

  const macWith = (key: Buffer, data: string): string => createHmac('sha256', key).update(data).digest('base64url');

  return {
    mac(purpose, data, bytes = 32) {
      const digest = createHmac('sha256', keysFor(purpose)[0] as Buffer)
        .update(data)
        .digest();
      return (bytes < digest.length ? digest.subarray(0, bytes) : digest).toString('base64url');
    },

    sign(purpose, value) {
      return `${value}.${macWith(keysFor(purpose)[0] as Buffer, value)}`;
    },

    verify(purpose, signed) {
      const dot = signed.length - SIGNATURE_LENGTH - 1;
      if (dot < 1 || signed.charCodeAt(dot) !== 46 /* . */) return undefined;
      const value = signed.slice(0, dot);
      const given = Buffer.from(signed.slice(dot + 1), 'latin1');
      const keys = keysFor(purpose);
      for (let i = 0; i < keys.length; i++) {
        const expected = Buffer.from(macWith(keys[i] as Buffer, value), 'latin1');
        // Both are 43 ASCII bytes; comparing the encodings rejects non-canonical base64 too.
        if (expected.length === given.length && timingSafeEqual(expected, given)) return { value, rotated: i > 0 };
      }
      return undefined;
    },

    seal(purpose, plaintext) {
      const iv = randomFillSync(Buffer.allocUnsafe(IV_BYTES));
      const cipher = createCipheriv('aes-256-gcm', keysFor(purpose)[0] as Buffer, iv);
      const body = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
      return Buffer.concat([Buffer.of(SEAL_VERSION), iv, body, cipher.getAuthTag()]).toString('base64url');
    },

    unseal(purpose, sealed) {
      if (!/^[A-Za-z0-9_-]+$/.test(sealed)) return undefined;
      const bytes = Buffer.from(sealed, 'base64url');
      // Node's decoder ignores stray trailing bits and characters: accept only the canonical form.
      if (bytes.toString('base64url') !== sealed) return undefined;
      if (bytes.length < 1 + IV_BYTES + TAG_BYTES || bytes[0] !== SEAL_VERSION) return undefined;
      const iv = bytes.subarray(1, 1 + IV_BYTES);
      const body = bytes.subarray(1 + IV_BYTES, bytes.length - TAG_BYTES);
      const tag = bytes.subarray(bytes.length - TAG_BYTES);
      const keys = keysFor(purpose);
      for (let i = 0; i < keys.length; i++) {
        const decipher = createDecipheriv('aes-256-gcm', keys[i] as Buffer, iv);
        decipher.setAuthTag(tag);
        try {
          const plaintext = Buffer.concat([decipher.update(body), decipher.final()]).toString('utf8');
          return { plaintext, rotated: i > 0 };
        } catch (error) {
          // GCM authentication failed under this key: try the next one, else it is forged.
          if (!(error instanceof Error) || !/authenticate/i.test(error.message)) throw error;
        }
      }
      return undefined;
    },
  };
}

/**
 * What a resolver remembers under one key ring, made on first use. A resolver may serve two
 * VisitorStates with different secrets, and what one of them verified or derived must never
 * answer for the other; nearly always there is one ring, so the last one's value is kept at hand
 * rather than looked up per request.
 *
 * @example
 * ```ts
 * const verifiedFor = perKeyRing(() => recentMap<number, SignedCookie>(10_000));
 * verifiedFor(ctx.keys).get(key);
 * ```
 */
export function perKeyRing<T>(make: () => T): (keys: KeyRing) => T {
  const values = new WeakMap<KeyRing, T>();
  let lastKeys: KeyRing | undefined;
  let lastValue: T | undefined;
  return (keys) => {
    if (keys === lastKeys) return lastValue as T;
    let value = values.get(keys);
    if (value === undefined) {
      value = make();
      values.set(keys, value);
    }
    lastKeys = keys;
    lastValue = value;
    return value;
  };
}

const POOL_IDS = 256;
const ID_BYTES = 16;
let pool = Buffer.alloc(0);
let poolOffset = 0;

/**
 * A random visitor ID: 128 bits as 22 URL-safe characters. Random bytes are drawn in
 * batches, since one `randomBytes(16)` call costs fifty times a `Map.get`.
 *
 * @example
 * ```ts
 * randomId(); // 'kX2q0b3YV8m1Jc9sZtQe4w'
 * ```
 */
export function randomId(): string {
  if (poolOffset + ID_BYTES > pool.length) {
    pool = randomFillSync(Buffer.allocUnsafe(POOL_IDS * ID_BYTES));
    poolOffset = 0;
  }
  const id = pool.toString('base64url', poolOffset, poolOffset + ID_BYTES);
  poolOffset += ID_BYTES;
  return id;
}
