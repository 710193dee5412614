// A Node service of the reference ticketing system after its move to JetStream: it
// publishes to the event stream and joins the consumers of common-events' Python
// listeners with the official `nats` client, as an equal member of their queue groups.
// It reports what it does as JSON lines on stdout.
//
//   node peer.js publish <url> <messages.json>
//   node peer.js listen  <url> <consumers.json> <member>
//
// messages.json: a list of {"subject": s, "data": value, "id": msgId} (sent as
// JSON.stringify(data) with the Nats-Msg-Id header msgId).
// consumers.json: the output of `common-events migrate --describe-consumers GROUP`:
// every consumer is created with that exact configuration (a no-op when a Python
// member made it already), then bound as a queue subscription on its deliver group.
// listen runs until SIGTERM or stdin closes, then drains its subscriptions.
'use strict'

const fs = require('fs')
const { connect, consumerOpts, headers } = require('nats')

function report (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

function fail (err) {
  report({ event: 'error', error: String(err && err.message ? err.message : err) })
  process.exit(2)
}

async function publish (url, file) {
  const messages = JSON.parse(fs.readFileSync(file, 'utf8'))
  const nc = await connect({ servers: url })
  const js = nc.jetstream()
  for (const message of messages) {
    const h = headers()
    // One id per event: a publish retried after a lost reply is stored once.
    const ack = await js.publish(message.subject, JSON.stringify(message.data), {
      msgID: message.id,
      headers: h
    })
    report({ event: 'published', subject: message.subject, seq: ack.seq, duplicate: ack.duplicate })
  }
  await nc.drain()
}

async function listen (url, file, member) {
  const description = JSON.parse(fs.readFileSync(file, 'utf8'))
  const nc = await connect({ servers: url, name: member })
  const jsm = await nc.jetstreamManager()
  const js = nc.jetstream()
  const subscriptions = []
  for (const consumer of description.consumers) {
    // The same consumer the Python Listener of this queue group binds to.
    await jsm.consumers.add(description.stream, consumer.config)
    const opts = consumerOpts()
    opts.bind(description.stream, consumer.name)
    opts.queue(consumer.deliverGroup)
    opts.manualAck()
    const sub = await js.subscribe(consumer.subject, opts)
    subscriptions.push(sub)
    ;(async () => {
      for await (const m of sub) {
        const raw = m.string()
        let data = null
        try {
          data = JSON.parse(raw)
        } catch (err) {
          data = null
        }
        report({
          event: 'message',
          member,
          subject: m.subject,
          sequence: m.seq,
          redelivered: m.redelivered,
          data,
          raw,
          origin: m.headers ? m.headers.get('Stan-Sequence') || null : null
        })
        m.ack()
      }
    })().catch(fail)
  }
  await nc.flush()
  report({ event: 'ready', member })
  let closing = false
  const stop = async () => {
    if (closing) return
    closing = true
    for (const sub of subscriptions) await sub.drain()
    await nc.drain()
    process.exit(0)
  }
  process.on('SIGTERM', () => { stop().catch(fail) })
  process.stdin.on('end', () => { stop().catch(fail) })
  process.stdin.resume()
}

const [mode, ...args] = process.argv.slice(2)
if (mode === 'publish') {
  publish(args[0], args[1]).catch(fail)
} else if (mode === 'listen') {
  listen(args[0], args[1], args[2]).catch(fail)
} else {
  process.stderr.write('usage: node peer.js publish|listen ...\n')
  process.exit(64)
}
