// ZeroMQ CURVE keys: making them, the key files `lorafleet keys` writes, and the
// socket options of a CURVE server (binds, authenticates clients through the
// ZAP handler in zap.ts) and a CURVE client (connects, checks the server's key).
//
// Key file format (text, UTF-8), the `key = "value"` lines of ZeroMQ's zcert
// files; `#` starts a comment line, blank lines are ignored, anything else is
// an error:
//
//   NAME.key  (mode 0600, keep it secret)    NAME.pub  (share it)
//     public-key = "<40 Z85 characters>"       public-key = "<40 Z85 characters>"
//     secret-key = "<40 Z85 characters>"
//
// The coordinator admits the workers whose NAME.pub files sit in its
// --authorized-keys folder; every worker needs the coordinator's NAME.pub.
import { existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { curveKeyPair } from 'zeromq';

/** A CURVE key pair, each key 32 bytes as 40 Z85 characters. */
export interface CurveKeyPair {
  publicKey: string;
  secretKey: string;
}

export function generateKeyPair(): CurveKeyPair {
  const { publicKey, secretKey } = curveKeyPair();
  return { publicKey, secretKey };
}

const Z85 = '0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#';
const Z85_VALUE = new Map([...Z85].map((c, i) => [c, i]));

/** Whether `s` is a 32-byte key in Z85 (40 characters, each 5-character group below 2^32). */
export function isZ85Key(s: unknown): s is string {
  if (typeof s !== 'string' || s.length !== 40) return false;
  for (let i = 0; i < 40; i += 5) {
    let value = 0;
    for (let j = i; j < i + 5; j++) {
      const digit = Z85_VALUE.get(s[j]!);
      if (digit === undefined) return false;
      value = value * 85 + digit;
    }
    if (value > 0xffffffff) return false;
  }
  return true;
}

/** Z85 of a key's 32 raw bytes (the form a ZAP request carries it in). */
export function z85Encode(bytes: Uint8Array): string {
  if (bytes.length % 4 !== 0)
    throw new RangeError(`Z85 needs a multiple of 4 bytes, got ${bytes.length}`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let out = '';
  for (let i = 0; i < bytes.length; i += 4) {
    let value = view.getUint32(i);
    let group = '';
    for (let j = 0; j < 5; j++) {
      group = Z85[value % 85]! + group;
      value = Math.floor(value / 85);
    }
    out += group;
  }
  return out;
}

const KEY_LINE = /^(public-key|secret-key)\s*=\s*"([^"]*)"$/;

/** The `public-key` / `secret-key` entries of a key file; throws naming the file and line. */
function parseKeyFile(file: string): { publicKey?: string; secretKey?: string } {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new Error(`cannot read CURVE key file ${file}: ${(error as Error).message}`);
  }
  const found: { publicKey?: string; secretKey?: string } = {};
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#')) continue;
    const where = `${file}:${index + 1}`;
    const match = KEY_LINE.exec(line);
    if (!match) {
      throw new Error(
        `${where}: expected public-key = "..." or secret-key = "...", got ${JSON.stringify(line.slice(0, 60))}`,
      );
    }
    const [, name, value] = match as unknown as [string, 'public-key' | 'secret-key', string];
    if (!isZ85Key(value)) {
      throw new Error(`${where}: ${name} is not a CURVE key (40 Z85 characters)`);
    }
    const field = name === 'public-key' ? 'publicKey' : 'secretKey';
    if (found[field] !== undefined) throw new Error(`${where}: a second ${name}`);
    found[field] = value;
  }
  return found;
}

/** A key pair from a NAME.key file. */
export function readKeyPair(file: string): CurveKeyPair {
  const { publicKey, secretKey } = parseKeyFile(file);
  if (publicKey === undefined || secretKey === undefined) {
    throw new Error(
      `${file} is not a CURVE key pair: it needs both public-key and secret-key lines ` +
        '(is it a .pub file? make a pair with `lorafleet keys --out DIR --name NAME`)',
    );
  }
  return { publicKey, secretKey };
}

/**
 * The public keys at `path`: a NAME.pub file, a NAME.key file's public half, or
 * every *.pub file of a folder (other files there are ignored). Duplicates are dropped.
 */
export function readPublicKeys(path: string): string[] {
  let files: string[];
  try {
    files = statSync(path).isDirectory()
      ? readdirSync(path)
          .filter((name) => name.endsWith('.pub'))
          .sort()
          .map((name) => join(path, name))
      : [path];
  } catch (error) {
    throw new Error(`cannot read CURVE public keys from ${path}: ${(error as Error).message}`);
  }
  if (files.length === 0) throw new Error(`${path} holds no .pub files (CURVE public keys)`);
  const keys = files.map((file) => {
    const { publicKey } = parseKeyFile(file);
    if (publicKey === undefined) throw new Error(`${file} has no public-key line`);
    return publicKey;
  });
  return [...new Set(keys)];
}

/** A public key given on the command line as the key itself or as a file holding exactly one. */
export function resolvePublicKey(fileOrKey: string): string {
  if (!existsSync(fileOrKey)) {
    if (isZ85Key(fileOrKey)) return fileOrKey;
    throw new Error(`${fileOrKey} is neither a CURVE public key (40 Z85 characters) nor a file`);
  }
  const keys = readPublicKeys(fileOrKey);
  if (keys.length !== 1) {
    throw new Error(`${fileOrKey} holds ${keys.length} public keys where one is expected`);
  }
  return keys[0]!;
}

export interface KeyFiles {
  keyPair: CurveKeyPair;
  /** DIR/NAME.key: both keys, mode 0600. */
  keyFile: string;
  /** DIR/NAME.pub: the public key only. */
  publicFile: string;
}

/** Makes a new key pair and writes DIR/NAME.key and DIR/NAME.pub; never overwrites either. */
export function writeKeyPair(dir: string, name: string): KeyFiles {
  if (!/^[A-Za-z0-9_-][A-Za-z0-9._-]*$/.test(name)) {
    throw new Error(`key name ${JSON.stringify(name)}: use letters, digits, '.', '_' and '-' only`);
  }
  const keyFile = join(dir, `${name}.key`);
  const publicFile = join(dir, `${name}.pub`);
  for (const file of [keyFile, publicFile]) {
    if (existsSync(file)) {
      throw new Error(
        `${file} exists; refusing to overwrite a key (delete it or choose another name)`,
      );
    }
  }
  mkdirSync(dir, { recursive: true });
  const keyPair = generateKeyPair();
  const header = `# lorafleet CURVE key ${JSON.stringify(name)}, made ${new Date().toISOString()}`;
  // 'wx': fail rather than overwrite if another process wrote the file meanwhile.
  writeFileSync(
    keyFile,
    `${header}\n# SECRET: give ${basename(publicFile)} to peers, never this file.\n` +
      `public-key = "${keyPair.publicKey}"\nsecret-key = "${keyPair.secretKey}"\n`,
    { mode: 0o600, flag: 'wx' },
  );
  writeFileSync(publicFile, `${header}\npublic-key = "${keyPair.publicKey}"\n`, {
    mode: 0o644,
    flag: 'wx',
  });
  return { keyPair, keyFile, publicFile };
}

/** Socket options of a CURVE server (zeromq's names): spread them into a Router or Pull. */
export interface CurveServerOptions {
  curveServer: true;
  curvePublicKey: string;
  curveSecretKey: string;
  zapDomain: string;
  zapEnforceDomain: true;
}

/** Socket options of a CURVE client: spread them into a Dealer or Push. */
export interface CurveClientOptions {
  curvePublicKey: string;
  curveSecretKey: string;
  curveServerKey: string;
}

/**
 * A CURVE server's options. `zapDomain` names the CurveAuthenticator policy that admits
 * clients; with zapEnforceDomain a server refuses every client while no ZAP handler runs,
 * rather than libzmq's default of admitting any key.
 */
export function curveServerOptions(keyPair: CurveKeyPair, zapDomain: string): CurveServerOptions {
  return {
    curveServer: true,
    curvePublicKey: keyPair.publicKey,
    curveSecretKey: keyPair.secretKey,
    zapDomain,
    zapEnforceDomain: true,
  };
}

/** A CURVE client's options: it only completes a handshake with the holder of `serverPublicKey`. */
export function curveClientOptions(
  keyPair: CurveKeyPair,
  serverPublicKey: string,
): CurveClientOptions {
  if (!isZ85Key(serverPublicKey)) {
    throw new Error(`the server's CURVE public key must be 40 Z85 characters`);
  }
  return {
    curvePublicKey: keyPair.publicKey,
    curveSecretKey: keyPair.secretKey,
    curveServerKey: serverPublicKey,
  };
}
