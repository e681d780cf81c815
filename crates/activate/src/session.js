// relman's PM2 session: one connection to the PM2 daemon for a whole activation, so each
// step costs a round trip to the daemon instead of starting PM2's command line again.
// Protocol: one JSON request per line on stdin, one JSON reply per line on stdout, each reply
// carrying the id of its request (relman drops a reply whose id it is no longer waiting for):
//   {"id":N,"op":"list"}                       -> {"id":N,"list":[{"pm_id":..,"name":..,"pid":..,"pm2_env":{..}}, ...]}
//   {"id":N,"op":"reload","pm_id":M,"env":{}}  -> {"id":N,"reloaded":M} | {"id":N,"error":"..."}
// The first line, before any request, is {"id":0,"ready":true} or {"id":0,"error":"..."}.
// Everything PM2 itself prints goes to stderr. stdin closing ends the session.
'use strict';

const out = (value) => process.stdout.write(JSON.stringify(value) + '\n');
console.log = console.error;
console.info = console.error;

let pm2;
try {
  pm2 = require(process.argv[1]);
} catch (err) {
  out({ id: 0, error: 'cannot load PM2 from ' + process.argv[1] + ': ' + err.message });
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
      listen_timeout: p.pm2_env.listen_timeout,
      wait_ready: p.pm2_env.wait_ready,
    },
  }));

pm2.connect((err) => {
  if (err) {
    out({ id: 0, error: 'cannot connect to the PM2 daemon: ' + (err.message || err) });
    process.exit(1);
  }
  out({ id: 0, ready: true });
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
      out({ id: null, error: 'bad request: ' + err.message });
      return resolve();
    }
    const id = request.id;
    const reply = (body) => {
      out({ id, ...body });
      resolve();
    };
    if (request.op === 'list') {
      pm2.list((err, list) => reply(err ? { error: String(err.message || err) } : { list: slim(list) }));
    } else if (request.op === 'reload') {
      for (const [key, value] of Object.entries(request.env || {})) process.env[key] = value;
      pm2.reload(String(request.pm_id), { updateEnv: true }, (err) =>
        reply(err ? { error: String(err.message || err) } : { reloaded: request.pm_id }),
      );
    } else {
      reply({ error: 'unknown op ' + request.op });
    }
  });
}
