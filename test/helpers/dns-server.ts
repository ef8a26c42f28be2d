// A tiny authoritative DNS server on loopback (UDP, node:dgram) for discovery tests: answers
// A, AAAA, CNAME and SRV queries from a record list the test sets, follows CNAME chains in
// the answer like a recursive resolver does, NXDOMAIN for unknown names, NOERROR/no data
// for a known name without the asked type. Records can be changed while it runs.

import dgram from 'node:dgram';
import { isIP } from 'node:net';

export type DnsRecord =
  | { name: string; type: 'A' | 'AAAA' | 'CNAME'; value: string }
  | { name: string; type: 'SRV'; value: { priority: number; weight: number; port: number; target: string } };

export interface TestDnsServer {
  port: number;
  /** For --resolver. */
  address: string;
  records: DnsRecord[];
  /** Queries received, as "NAME TYPE". */
  queries: string[];
  close(): Promise<void>;
}

const TYPE_CODES: Record<DnsRecord['type'], number> = { A: 1, CNAME: 5, AAAA: 28, SRV: 33 };
const TYPE_NAMES = new Map(Object.entries(TYPE_CODES).map(([name, code]) => [code, name]));

function encodeName(name: string): Buffer {
  const labels = name.replace(/\.$/, '').split('.').filter(Boolean);
  return Buffer.concat([...labels.map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l, 'ascii')])), Buffer.from([0])]);
}

function encodeIpv6(address: string): Buffer {
  const [head = '', tail = ''] = address.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = address.includes('::') ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

function rdata(record: DnsRecord): Buffer {
  switch (record.type) {
    case 'A': return Buffer.from(record.value.split('.').map(Number));
    case 'AAAA': return encodeIpv6(record.value);
    case 'CNAME': return encodeName(record.value);
    case 'SRV': {
      const head = Buffer.alloc(6);
      head.writeUInt16BE(record.value.priority, 0);
      head.writeUInt16BE(record.value.weight, 2);
      head.writeUInt16BE(record.value.port, 4);
      return Buffer.concat([head, encodeName(record.value.target)]);
    }
  }
}

function encodeRecord(record: DnsRecord): Buffer {
  const data = rdata(record);
  const fixed = Buffer.alloc(10);
  fixed.writeUInt16BE(TYPE_CODES[record.type], 0);
  fixed.writeUInt16BE(1, 2); // IN
  fixed.writeUInt32BE(60, 4);
  fixed.writeUInt16BE(data.length, 8);
  return Buffer.concat([encodeName(record.name), fixed, data]);
}

function parseQuestion(message: Buffer): { name: string; type: number; end: number } | null {
  let offset = 12;
  const labels: string[] = [];
  while (offset < message.length) {
    const length = message[offset]!;
    if (length === 0) { offset += 1; break; }
    if (length > 63) return null;
    labels.push(message.subarray(offset + 1, offset + 1 + length).toString('ascii'));
    offset += 1 + length;
  }
  if (offset + 4 > message.length) return null;
  return { name: labels.join('.').toLowerCase(), type: message.readUInt16BE(offset), end: offset + 4 };
}

export async function startDnsServer(records: DnsRecord[] = []): Promise<TestDnsServer> {
  const socket = dgram.createSocket('udp4');
  const server: TestDnsServer = {
    port: 0, address: '', records, queries: [],
    close: () => new Promise((resolve) => socket.close(() => resolve())),
  };
  const same = (a: string, b: string): boolean => a.toLowerCase().replace(/\.$/, '') === b.toLowerCase().replace(/\.$/, '');

  socket.on('message', (message, peer) => {
    if (message.length < 12) return;
    const question = parseQuestion(message);
    if (!question) return;
    const typeName = TYPE_NAMES.get(question.type);
    server.queries.push(`${question.name} ${typeName ?? question.type}`);
    const answers: DnsRecord[] = [];
    let name = question.name;
    for (let depth = 0; depth < 8; depth += 1) {
      const direct = server.records.filter((r) => same(r.name, name) && r.type === typeName);
      if (direct.length > 0) { answers.push(...direct); break; }
      const alias = typeName !== 'CNAME' ? server.records.find((r) => same(r.name, name) && r.type === 'CNAME') : undefined;
      if (!alias || alias.type !== 'CNAME') break;
      answers.push(alias);
      name = alias.value;
    }
    const known = server.records.some((r) => same(r.name, question.name));
    const header = Buffer.alloc(12);
    header.writeUInt16BE(message.readUInt16BE(0), 0);
    const recursionDesired = message.readUInt16BE(2) & 0x0100;
    header.writeUInt16BE(0x8000 | 0x0400 | recursionDesired | 0x0080 | (known || answers.length ? 0 : 3), 2);
    header.writeUInt16BE(1, 4);
    header.writeUInt16BE(answers.length, 6);
    const reply = Buffer.concat([header, message.subarray(12, question.end), ...answers.map(encodeRecord)]);
    socket.send(reply, peer.port, peer.address);
  });
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', resolve));
  server.port = socket.address().port;
  server.address = `127.0.0.1:${server.port}`;
  for (const record of records) {
    if ((record.type === 'A' && isIP(record.value) !== 4) || (record.type === 'AAAA' && isIP(record.value) !== 6)) {
      throw new Error(`test DNS: bad ${record.type} value ${record.value}`);
    }
  }
  return server;
}
