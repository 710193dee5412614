// The Node side of benchmarks/stan_bench.py: node-nats-streaming doing the work the
// reference services do, timed. Prints one JSON line: {"messages": n, "seconds": s}.
//
//   node stan_bench.js publish-awaited  <url> <clusterId> <clientId> <subject> <n> <json>
//   node stan_bench.js publish-pipelined <url> <clusterId> <clientId> <subject> <n> <json> <window>
//
// Publishing stringifies the event data on every publish, as the services do.
//   node stan_bench.js consume <url> <clusterId> <clientId> <subject> <n> <queueGroup> <maxInFlight>
'use strict'

const path = require('path')
const nats = require(path.join(__dirname, '..', 'tests', 'interop', 'node_modules', 'node-nats-streaming'))

const [mode, url, clusterId, clientId, subject, count, ...rest] = process.argv.slice(2)
const n = Number(count)

function done (started) {
  const [s, ns] = process.hrtime(started)
  process.stdout.write(JSON.stringify({ messages: n, seconds: s + ns / 1e9 }) + '\n')
}

function fail (err) {
  process.stderr.write(String(err) + '\n')
  process.exit(2)
}

// What the course's Listener does with a message: parse it, then the service reads
// the fields it needs; check them the way a validator would.
function validTicketCreated (data) {
  return typeof data.id === 'string' && data.id.length > 0 &&
    Number.isInteger(data.version) && data.version >= 0 &&
    typeof data.title === 'string' &&
    typeof data.price === 'number' && data.price >= 0 &&
    typeof data.userId === 'string' && data.userId.length > 0
}

const stan = nats.connect(clusterId, clientId, { url, maxPubAcksInflight: 1 << 20 })
stan.on('error', fail)
stan.on('connect', () => {
  const finish = (started) => {
    done(started)
    stan.on('close', () => process.exit(0))
    stan.close()
  }
  if (mode === 'publish-awaited') {
    const data = JSON.parse(rest[0])
    // As the course's Publisher.publish: JSON.stringify(data), resolve on the PubAck.
    const publish = () => new Promise((resolve, reject) => {
      stan.publish(subject, JSON.stringify(data), (err, guid) => (err ? reject(err) : resolve(guid)))
    })
    const started = process.hrtime()
    ;(async () => {
      for (let i = 0; i < n; i++) await publish()
      finish(started)
    })().catch(fail)
  } else if (mode === 'publish-pipelined') {
    const data = JSON.parse(rest[0])
    const window = Number(rest[1])
    let sent = 0
    let acked = 0
    const started = process.hrtime()
    const onAck = (err) => {
      if (err) fail(err)
      acked += 1
      if (acked === n) finish(started)
      else if (sent < n) send()
    }
    const send = () => {
      sent += 1
      stan.publish(subject, JSON.stringify(data), onAck)
    }
    while (sent < Math.min(window, n)) send()
  } else if (mode === 'consume') {
    const [queueGroup, maxInFlight] = rest
    const options = stan.subscriptionOptions()
      .setDeliverAllAvailable()
      .setManualAckMode(true)
      .setAckWait(30 * 1000)
      .setMaxInFlight(Number(maxInFlight))
      .setDurableName(queueGroup)
    let handled = 0
    // From the subscribe call, as on the Python side: the subscription request is part
    // of the work.
    const started = process.hrtime()
    const sub = stan.subscribe(subject, queueGroup, options)
    sub.on('error', fail)
    sub.on('message', (msg) => {
      const data = JSON.parse(msg.getData())
      if (!validTicketCreated(data)) fail(new Error('invalid event'))
      msg.ack()
      handled += 1
      if (handled === n) finish(started)
    })
  } else {
    fail(new Error('unknown mode ' + mode))
  }
})
