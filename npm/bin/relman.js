#!/usr/bin/env node
// Runs the relman binary this package carries for this platform (vendor/PLATFORM-ARCH/relman),
// with this process's arguments, standard streams and environment, and exits the way it did.
// Node cannot exec(), so this process waits: signals sent to it are passed on, and relman
// treats a second copy of one (a Ctrl-C reaches both processes) as the first.
'use strict';

const { spawn } = require('node:child_process');
const os = require('node:os');
const path = require('node:path');

const SUPPORTED = ['linux-x64'];
const platform = `${process.platform}-${process.arch}`;

if (!SUPPORTED.includes(platform)) {
  process.stderr.write(
    `relman: no binary for ${platform} in this package; supported: ${SUPPORTED.join(', ')}\n`,
  );
  process.exit(1);
}

const binary = path.join(__dirname, '..', 'vendor', platform, 'relman');
const child = spawn(binary, process.argv.slice(2), { stdio: 'inherit' });

const forwarded = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];
for (const signal of forwarded) {
  process.on(signal, () => child.kill(signal));
}

child.on('error', (error) => {
  process.stderr.write(`relman: cannot run \`${binary}\`: ${error.message}\n`);
  process.exit(1);
});

child.on('exit', (code, signal) => {
  if (signal === null) {
    process.exit(code);
  }
  // Die of the same signal, so the caller sees what relman saw.
  for (const forwardedSignal of forwarded) {
    process.removeAllListeners(forwardedSignal);
  }
  process.kill(process.pid, signal);
  // A signal Node ignores (SIGPIPE) leaves this process running: exit as a shell reports it.
  process.exit(128 + (os.constants.signals[signal] || 0));
});
