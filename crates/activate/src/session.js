// relman's PM2 session: one connection to the PM2 daemon for a whole activation, so each
// step costs a round trip to the daemon instead of starting PM2's command line again.
// Protocol: one JSON request per line on stdin, one JSON reply per line on stdout.
//   {"op":"list"}                        -> [{"pm_id":..,"name":..,"pid":..,"pm2_env":{..}}, ...]
//   {"op":"reload","id":N,"env":{...}}    -> {"ok":true} | {"error":"..."}
// Everything PM2 itself prints goes to stderr. stdin closing ends the session.
'use strict';

const out = (value) => process.stdout.write(JSON.stringify(value) + '\n');
console.log = console.error;
console.info = console.error;

let pm2;
try {
  pm2 = require(process.argv[1]);
} catch (err) {
  out({ error: 'cannot load PM2 from ' + process.argv[1] + ': ' + err.message });
  process.exit(1);
}
// The environment a reload passes with updateEnv is this process's own: relman starts it clean,
// and the marker PM2 sets for programmatic use is not the app's business.
delete process.env.PM2_PROGRAMMATIC;

const slim = (list) =>
  list.map((p) => ({
    pm_id: p.pm_id,
    name: p.name,
    pid: p.pid,
    pm2_env: {
      status: p.pm2_env.status,
      restart_time: p.pm2_env.restart_time,
      pm_cwd: p.pm2_env.pm_cwd,
      exec_mode: p.pm2_env.exec_mode,
      kill_timeout: p.pm2_env.kill_timeout,
    },
  }));

pm2.connect((err) => {
  if (err) {
    out({ error: 'cannot connect to the PM2 daemon: ' + (err.message || err) });
    process.exit(1);
  }
  out({ ready: true });
  let queue = Promise.resolve();
  require('readline')
    .createInterface({ input: process.stdin })
    .on('line', (line) => {
      queue = queue.then(() => handle(line));
    })
    .on('close', () => queue.then(() => pm2.disconnect(() => process.exit(0))));
});

function handle(line) {
  return new Promise((resolve) => {
    let request;
    try {
      request = JSON.parse(line);
    } catch (err) {
      out({ error: 'bad request: ' + err.message });
      return resolve();
    }
    if (request.op === 'list') {
      pm2.list((err, list) => {
        out(err ? { error: String(err.message || err) } : slim(list));
        resolve();
      });
    } else if (request.op === 'reload') {
      for (const [key, value] of Object.entries(request.env || {})) process.env[key] = value;
      pm2.reload(request.id, { updateEnv: true }, (err) => {
        out(err ? { error: String(err.message || err) } : { ok: true });
        resolve();
      });
    } else {
      out({ error: 'unknown op ' + request.op });
      resolve();
    }
  });
}
