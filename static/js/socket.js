// One reconnecting WebSocket for every live page (the run page's charts, the runs list, the
// pipeline run's status): `liveSocket("/ws/runs/", {onMessage, indicator})`.
//
// A closed socket is opened again after 0.5 s, then 1, 2, 4 … up to 10 s while it keeps failing
// (back to 0.5 s once one opens); `onReconnect` runs when a socket opens after a closed one (the
// page back-fills what it missed over HTTP). The server closes with 4403 when the user may no
// longer see the page (deactivated, role taken away) and 4404 when what it shows is gone: those
// are final, the page says so and does not retry. (A socket the server refuses before accepting
// it reaches the browser as 1006, indistinguishable from a network error: it is retried.)
// The handlers are the WebSocket's own onopen/onmessage/onclose: a test that sets `ws.onclose =
// null` before closing it drops the socket without a reconnect.

const FIRST_DELAY_MS = 500;
const MAX_DELAY_MS = 10000;
// close code (r1lab/accounts/consumers.py, the consumers' connect) -> what the indicator says
const FINAL = { 4403: "○ closed: no access", 4404: "○ closed: not found" };

export function socketUrl(path) {
  return `${location.protocol === "https:" ? "wss" : "ws"}://${location.host}${path}`;
}

// `path`: "/ws/…/". Options: onMessage(msg) with the parsed JSON; onReconnect(); onSocket(ws) for
// each WebSocket it opens; indicator: an element whose text says live / reconnecting / closed;
// reconnecting: true when the first socket is itself a reconnect (onReconnect runs when it opens).
export function liveSocket(path, { onMessage, onReconnect = null, onSocket = null, indicator = null, reconnecting = false } = {}) {
  let delay = FIRST_DELAY_MS;
  const say = (text) => { if (indicator) indicator.textContent = text; };
  const open = (again) => {
    const ws = new WebSocket(socketUrl(path));
    ws.onopen = () => {
      delay = FIRST_DELAY_MS;
      say("● live");
      if (again && onReconnect) onReconnect();
    };
    ws.onmessage = (ev) => onMessage(JSON.parse(ev.data));
    ws.onclose = (ev) => {
      if (FINAL[ev.code]) { say(FINAL[ev.code]); return; }
      say("○ reconnecting");
      const wait = delay;
      delay = Math.min(MAX_DELAY_MS, delay * 2);
      setTimeout(() => open(true), wait);
    };
    if (onSocket) onSocket(ws);
  };
  open(reconnecting);
}
