#!/usr/bin/env node
'use strict';
// Writes a deterministic source tree for bench/store.sh: about 20,000 files and 300 MB,
// mostly small files (log-uniform 64 B .. 64 KiB, or up to --max-size) in nested directories,
// a few large ones
// (4 .. 10 MiB), a few executables and a few symlinks. The same seed always gives the same
// tree, byte for byte: sizes and names come from a seeded xorshift PRNG and contents from an
// AES-128-CTR keystream keyed by the seed and the file's index.
//
// usage: node bench/gen-tree.js DIR [--seed N] [--files N] [--large N] [--max-size BYTES]
// (bench/scaling.sh uses --large 0 --max-size 4096 to grow the file count, not the bytes)

const crypto = require('node:crypto');
const fs = require('node:fs');
const path = require('node:path');

function parseArgs(argv) {
  const opts = { dir: null, seed: 42, files: 20000, large: 16, 'max-size': 65536 };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--seed') opts.seed = Number(argv[++i]);
    else if (arg === '--files') opts.files = Number(argv[++i]);
    else if (arg === '--large') opts.large = Number(argv[++i]);
    else if (arg === '--max-size') opts['max-size'] = Number(argv[++i]);
    else if (!arg.startsWith('-') && opts.dir === null) opts.dir = arg;
    else throw new Error(`unknown argument ${arg}`);
  }
  if (!opts.dir) throw new Error('usage: gen-tree.js DIR [--seed N] [--files N] [--large N] [--max-size BYTES]');
  for (const key of ['seed', 'files', 'large', 'max-size']) {
    if (!Number.isInteger(opts[key]) || opts[key] < 0) throw new Error(`--${key} must be a whole number`);
  }
  return opts;
}

// xorshift32: small, fast, deterministic across Node versions.
function prng(seed) {
  let state = (seed ^ 0x9e3779b9) >>> 0 || 1;
  return () => {
    state ^= state << 13; state >>>= 0;
    state ^= state >>> 17;
    state ^= state << 5; state >>>= 0;
    return state / 0x100000000;
  };
}

function contents(seed, index, size) {
  const key = crypto.createHash('sha256').update(`relman-bench-${seed}`).digest().subarray(0, 16);
  const iv = Buffer.alloc(16);
  iv.writeUInt32BE(index >>> 0, 12);
  const cipher = crypto.createCipheriv('aes-128-ctr', key, iv);
  return cipher.update(Buffer.alloc(size));
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const rand = prng(opts.seed);
  const int = (lo, hi) => lo + Math.floor(rand() * (hi - lo + 1));

  // Directories: a tree of fan-out up to 6 and depth up to 4, like a web app's source.
  const dirs = [''];
  const names = ['src', 'lib', 'components', 'pages', 'public', 'assets', 'styles', 'utils', 'api', 'locales'];
  const frontier = [['', 0]];
  while (frontier.length > 0 && dirs.length < 1200) {
    const [parent, depth] = frontier.shift();
    if (depth >= 4) continue;
    const fanout = int(2, 6);
    for (let i = 0; i < fanout; i++) {
      const dir = path.join(parent, `${names[int(0, names.length - 1)]}-${i}`);
      dirs.push(dir);
      frontier.push([dir, depth + 1]);
    }
  }
  const exts = ['.js', '.ts', '.tsx', '.json', '.css', '.md', '.svg', '.png', '.map', '.txt'];

  fs.mkdirSync(opts.dir, { recursive: true });
  for (const dir of dirs) fs.mkdirSync(path.join(opts.dir, dir), { recursive: true });

  let bytes = 0;
  const filesIn = new Map();
  const small = opts.files - opts.large;
  for (let index = 0; index < opts.files; index++) {
    const isLarge = index >= small;
    const size = isLarge
      ? int(4 << 20, 10 << 20)
      : Math.floor(Math.exp(Math.log(64) + rand() * (Math.log(opts['max-size']) - Math.log(64))));
    const dir = dirs[int(0, dirs.length - 1)];
    const name = isLarge ? `bundle-${index}.bin` : `f${index}${exts[int(0, exts.length - 1)]}`;
    const file = path.join(opts.dir, dir, name);
    const mode = index % 97 === 0 ? 0o755 : 0o644;
    fs.writeFileSync(file, contents(opts.seed, index, size), { mode });
    fs.chmodSync(file, mode);
    bytes += size;
    if (!filesIn.has(dir)) filesIn.set(dir, name);
  }
  // A few relative symlinks to a sibling file: copied as symlinks, never followed or hashed.
  const linked = [...filesIn.keys()];
  for (let i = 0; i < Math.min(20, linked.length); i++) {
    const dir = linked[int(0, linked.length - 1)];
    fs.symlinkSync(filesIn.get(dir), path.join(opts.dir, dir, `link-${i}`));
  }
  const summary = { seed: opts.seed, files: opts.files, large: opts.large, maxSize: opts['max-size'], dirs: dirs.length, bytes };
  console.log(JSON.stringify(summary));
}

main();
