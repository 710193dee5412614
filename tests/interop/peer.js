// A Node service of the reference ticketing system, reduced to its messaging: it
// listens and publishes with node-nats-streaming exactly the way the course's shared
// Listener and Publisher base classes do (queue group, setDeliverAllAvailable,
// setManualAckMode(true), setAckWait(5 * 1000), setDurableName(queueGroupName),
// JSON.stringify(data)). It reports what it sees as JSON lines on stdout.
//
//   node peer.js listen  <url> <clusterId> <clientId> <queueGroup> <subject>[,<subject>...]
//   node peer.js publish <url> <clusterId> <clientId> <messages.json>
//
// messages.json is a list of {"subject": s, "data": value} (sent as JSON.stringify(data))
// or {"subject": s, "raw": string} (sent as is, to play a misbehaving service).
// listen runs until SIGTERM or stdin closes, then closes its connection.
'use strict'

const fs = require('fs')
const nats = require('node-nats-streaming')
// Generated from the Python models by `common-events schema npm` (see conftest.py).
const { SUBJECTS, parseEventData } = require('@ticketing/common-events')

function report (event) {
  process.stdout.write(JSON.stringify(event) + '\n')
}

function connect (url, clusterId, clientId) {
  const stan = nats.connect(clusterId, clientId, { url })
  stan.on('error', (err) => {
    report({ event: 'error', error: String(err) })
    process.exit(2)
  })
  return stan
}

function listen (url, clusterId, clientId, queueGroupName, subjects) {
  const unknown = subjects.filter((subject) => !SUBJECTS.includes(subject))
  if (unknown.length > 0) {
    report({ event: 'error', error: `not an event subject: ${unknown.join(', ')}` })
    process.exit(2)
  }
  const stan = connect(url, clusterId, clientId)
  stan.on('connect', () => {
    let ready = 0
    for (const subject of subjects) {
      const options = stan
        .subscriptionOptions()
        .setDeliverAllAvailable()
        .setManualAckMode(true)
        .setAckWait(5 * 1000)
        .setDurableName(queueGroupName)
      const subscription = stan.subscribe(subject, queueGroupName, options)
      subscription.on('ready', () => {
        ready += 1
        if (ready === subjects.length) report({ event: 'ready' })
      })
      subscription.on('error', (err) => report({ event: 'error', error: String(err) }))
      subscription.on('message', (msg) => {
        const data = msg.getData()
        const raw = typeof data === 'string' ? data : data.toString('utf8')
        let parsed = null
        try {
          parsed = JSON.parse(raw)
        } catch (err) {
          parsed = null
        }
        let valid = true
        let invalidBecause = null
        try {
          parseEventData(msg.getSubject(), raw)
        } catch (err) {
          valid = false
          invalidBecause = String(err.message || err)
        }
        report({
          event: 'message',
          // What the package's validator says: the same verdict as a Python listener's.
          valid,
          invalidBecause,
          subject: msg.getSubject(),
          sequence: msg.getSequence(),
          redelivered: msg.isRedelivered(),
          raw,
          data: parsed,
          // What this service would write for the same value: equal means byte for byte.
          restringified: parsed === null ? null : JSON.stringify(parsed)
        })
        msg.ack()
      })
    }
  })
  let closing = false
  const stop = () => {
    if (closing) return
    closing = true
    stan.on('close', () => process.exit(0))
    stan.close()
  }
  process.on('SIGTERM', stop)
  process.stdin.on('end', stop)
  process.stdin.resume()
}

function publish (url, clusterId, clientId, file) {
  const messages = JSON.parse(fs.readFileSync(file, 'utf8'))
  const stan = connect(url, clusterId, clientId)
  stan.on('connect', () => {
    let acked = 0
    const next = (index) => {
      if (index === messages.length) return
      const message = messages[index]
      const payload = 'raw' in message ? message.raw : JSON.stringify(message.data)
      // One at a time, in order, like the course's Publisher.publish awaited in turn.
      stan.publish(message.subject, payload, (err, guid) => {
        if (err) {
          report({ event: 'error', error: String(err) })
          process.exit(2)
        }
        report({ event: 'published', subject: message.subject, guid })
        acked += 1
        if (acked === messages.length) {
          stan.on('close', () => process.exit(0))
          stan.close()
        } else {
          next(index + 1)
        }
      })
    }
    next(0)
  })
}

const [mode, ...args] = process.argv.slice(2)
if (mode === 'listen') {
  const [url, clusterId, clientId, queueGroupName, subjects] = args
  listen(url, clusterId, clientId, queueGroupName, subjects.split(','))
} else if (mode === 'publish') {
  const [url, clusterId, clientId, file] = args
  publish(url, clusterId, clientId, file)
} else {
  process.stderr.write('usage: node peer.js listen|publish ...\n')
  process.exit(64)
}
