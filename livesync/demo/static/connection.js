// The connection indicator: client.status as a person reads it.
//
//   online                       -> "live"
//   connecting, offline + retry  -> "reconnecting…" ("connecting…" before the first welcome)
//   resyncing                    -> "offline, resyncing" (back, fetching what was missed)
//   offline for good             -> "offline" (closed with a code that is not retried)
//
// data-status carries the raw client.status, for styles and tests.

export function watchConnection(client, node) {
  const label = node.querySelector('.label');
  let wasOnline = false;
  let retrying = true;
  const show = (status) => {
    if (status === 'online') wasOnline = true;
    if (status !== 'offline') retrying = true;
    let text;
    if (status === 'online') text = 'live';
    else if (status === 'resyncing') text = 'offline, resyncing';
    else if (status === 'offline' && !retrying) text = 'offline';
    else text = wasOnline ? 'reconnecting…' : 'connecting…';
    node.dataset.status = status;
    label.textContent = text;
    node.title = `client.status: ${status}`;
  };
  client.on('status', show);
  client.on('disconnect', ({ retry }) => {
    retrying = retry;
    show(client.status);
  });
  show(client.status);
}
