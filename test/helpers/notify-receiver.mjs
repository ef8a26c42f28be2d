// Runs under `systemd-socket-activate --datagram`: fd 3 is a real AF_UNIX SOCK_DGRAM socket
// bound to the path a test gives as NOTIFY_SOCKET. Every read() on it returns exactly one
// datagram; each is printed as one JSON string per line. (Node has no Unix datagram sockets,
// but fs.readSync on the inherited descriptor is a plain read(2).)
import fs from 'node:fs';

const buffer = Buffer.alloc(65536);
const pause = new Int32Array(new SharedArrayBuffer(4));
for (;;) {
  let length;
  try {
    length = fs.readSync(3, buffer, 0, buffer.length, null);
  } catch (error) {
    if (error.code === 'EAGAIN') { Atomics.wait(pause, 0, 0, 10); continue; }
    throw error;
  }
  fs.writeSync(1, `${JSON.stringify(buffer.subarray(0, length).toString('utf8'))}\n`);
}
