// next-server.js, written by `relman init` for a Next.js app (edit it freely: relman never
// overwrites it). PM2 runs it (`script` in ecosystem.config.js) with `cwd` ROOT/current, and
// relman's preflight runs it inside a release: either way it serves the Next.js app of the
// directory it was started in, with the `next` that release installed, so the app itself stays
// stock. It exists for one reason: on a reload it drains. `next start` under PM2's cluster mode
// leaves while a connection the cluster primary has just handed it is still open, so now and
// then a request hangs until the client gives up; this server stops taking connections, lets
// every request in flight finish, and leaves through `cluster.worker.disconnect()`, which
// hands the listening socket back to the primary before the process exits.
'use strict';
const cluster = require('node:cluster');
const fs = require('node:fs');
const http = require('node:http');
const path = require('node:path');

// On Linux the working directory is the physical one: the release, not `current`.
const release = process.cwd();
// An `output: 'standalone'` build serves from `.next/standalone`, with the `next` and the
// config its build traced there (relman's build has linked `.next/static` and `public` in).
const standalone = standaloneDir(release);
const config = standalone && readServerFiles(standalone).config;
const dir = standalone || release;
if (standalone) {
  // What the `server.js` Next.js writes there does before it loads `next`.
  process.env.__NEXT_PRIVATE_STANDALONE_CONFIG = JSON.stringify(config);
  process.chdir(dir);
}
const port = Number(process.env.PORT) || 3000;
// Unset: every interface, IPv6 and IPv4, as `next start` does. Set HOST=127.0.0.1 in the
// ecosystem file's `env` when only a proxy on this host should reach the app.
const host = process.env.HOST || undefined;
// Below PM2's kill_timeout (10000 ms in the ecosystem file relman writes): the last word.
const drainMs = Number(process.env.RELMAN_DRAIN_MS) || 8000;

const next = require(require.resolve('next', { paths: [dir] }));
const app = next({ dev: false, dir, hostname: host, port, ...(config && { conf: config }) });
const handle = app.getRequestHandler();

let server = null;
let draining = false;
const inFlight = new Set();

process.on('SIGINT', drain); // what PM2 sends on reload and stop
process.on('SIGTERM', drain);

app
  .prepare()
  .then(() => {
    if (draining) return leave();
    server = http.createServer((req, res) => {
      if (draining) res.setHeader('Connection', 'close');
      inFlight.add(res);
      res.on('close', () => {
        inFlight.delete(res);
        // A socket is idle only once its response is out: close it on the next turn.
        if (draining) setImmediate(() => server.closeIdleConnections());
      });
      handle(req, res).catch((err) => {
        console.error(`${req.method} ${req.url} failed:`, err);
        if (!res.headersSent) {
          res.statusCode = 500;
          res.end('internal error\n');
        } else {
          res.destroy();
        }
      });
    });
    // Longer than any client's idle timeout: the server never closes a socket a client may
    // be about to reuse (that request would fail); while draining, idle sockets close at once.
    server.keepAliveTimeout = 65_000;
    server.listen(port, host, () => {
      console.log(`next-server: ${dir} on port ${port}`);
    });
  })
  .catch((err) => {
    // A release that cannot boot exits: PM2 then sees it crash, not a process that stays up
    // without listening.
    console.error('next-server: Next.js could not start:', err);
    process.exit(1);
  });

function drain() {
  if (draining) return;
  draining = true;
  setTimeout(() => process.exit(1), drainMs).unref();
  if (!server) process.exit(0); // still booting: nothing is in flight
  for (const res of inFlight) if (!res.headersSent) res.setHeader('Connection', 'close');
  server.close(leave); // no new connections; `leave` once the last one is gone
  server.closeIdleConnections();
}

function leave() {
  const exit = () => setTimeout(() => process.exit(0), 200).unref();
  if (cluster.isWorker && cluster.worker.isConnected()) {
    cluster.worker.once('disconnect', exit); // the primary has taken back the socket
    cluster.worker.disconnect();
  } else {
    exit();
  }
}

/**
 * Where an `output: 'standalone'` build put the app's server: `.next/standalone`, and below it
 * the app's path in its workspace when the app is one package of a monorepo. Null when the
 * release has no standalone server.
 */
function standaloneDir(app) {
  let relative = '';
  try {
    relative = readServerFiles(app).relativeAppDir || '';
  } catch {
    return null;
  }
  const dir = path.join(app, '.next', 'standalone', relative);
  return fs.existsSync(path.join(dir, 'server.js')) ? dir : null;
}

function readServerFiles(dir) {
  const file = path.join(dir, '.next', 'required-server-files.json');
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}
