// A Node service of the ticketing system, written the course's way against the
// generated package; it reports what it does as JSON lines on stdout.
//
//   main listen  <url> <clusterId> <clientId>     all six listeners, until SIGTERM
//   main publish <url> <clusterId> <clientId> <messages.json>   [{subject, data}, ...]
//   main check   <payloads.json>   [{subject, payload (base64)}, ...]: the validator's verdicts
import nats from "node-nats-streaming";
import type { Stan } from "node-nats-streaming";
import { readFileSync } from "node:fs";
import {
  InvalidEventError,
  SUBJECTS,
  Subjects,
  parseEventData,
  validators,
  type EventData,
} from "@ticketing/common-events";
import {
  ExpirationCompleteListener,
  OrderCancelledListener,
  OrderCreatedListener,
  PaymentCreatedListener,
  TicketCreatedListener,
  TicketUpdatedListener,
} from "./events/listeners.js";
import {
  ExpirationCompletePublisher,
  OrderCancelledPublisher,
  OrderCreatedPublisher,
  PaymentCreatedPublisher,
  TicketCreatedPublisher,
  TicketUpdatedPublisher,
} from "./events/publishers.js";
import { report } from "./report.js";

function connect(url: string, clusterId: string, clientId: string): Stan {
  const stan = nats.connect(clusterId, clientId, { url });
  stan.on("error", (err) => {
    report({ event: "error", error: String(err) });
    process.exit(2);
  });
  return stan;
}

function close(stan: Stan): void {
  stan.on("close", () => process.exit(0));
  stan.close();
}

function listen(url: string, clusterId: string, clientId: string): void {
  const stan = connect(url, clusterId, clientId);
  stan.on("connect", () => {
    const listeners = [
      new TicketCreatedListener(stan),
      new TicketUpdatedListener(stan),
      new OrderCreatedListener(stan),
      new OrderCancelledListener(stan),
      new ExpirationCompleteListener(stan),
      new PaymentCreatedListener(stan),
    ];
    let ready = 0;
    for (const listener of listeners) {
      listener.listen().on("ready", () => {
        ready += 1;
        if (ready === listeners.length) report({ event: "ready", subjects: SUBJECTS });
      });
    }
  });
  let closing = false;
  const stop = () => {
    if (closing) return;
    closing = true;
    close(stan);
  };
  process.on("SIGTERM", stop);
  process.stdin.on("end", stop);
  process.stdin.resume();
}

async function publishOne(stan: Stan, subject: Subjects, data: unknown): Promise<void> {
  // Each publisher takes its own event's data; the file's data is checked on the way.
  switch (subject) {
    case Subjects.TicketCreated:
      return new TicketCreatedPublisher(stan).publish(data as EventData<typeof subject>);
    case Subjects.TicketUpdated:
      return new TicketUpdatedPublisher(stan).publish(data as EventData<typeof subject>);
    case Subjects.OrderCreated:
      return new OrderCreatedPublisher(stan).publish(data as EventData<typeof subject>);
    case Subjects.OrderCancelled:
      return new OrderCancelledPublisher(stan).publish(data as EventData<typeof subject>);
    case Subjects.ExpirationComplete:
      return new ExpirationCompletePublisher(stan).publish(data as EventData<typeof subject>);
    case Subjects.PaymentCreated:
      return new PaymentCreatedPublisher(stan).publish(data as EventData<typeof subject>);
  }
}

function publish(url: string, clusterId: string, clientId: string, file: string): void {
  const messages: Array<{ subject: Subjects; data: unknown }> = JSON.parse(
    readFileSync(file, "utf8"),
  );
  const stan = connect(url, clusterId, clientId);
  stan.on("connect", async () => {
    // One at a time, in order, like the course's `await publisher.publish(...)`.
    for (const { subject, data } of messages) {
      try {
        await publishOne(stan, subject, data);
        report({ event: "published", subject });
      } catch (error) {
        if (!(error instanceof InvalidEventError)) throw error;
        report({ event: "refused", subject, errors: error.errors });
      }
    }
    close(stan);
  });
}

function check(file: string): void {
  const payloads: Array<{ subject: Subjects; payload: string }> = JSON.parse(
    readFileSync(file, "utf8"),
  );
  payloads.forEach(({ subject, payload }, index) => {
    const bytes = Buffer.from(payload, "base64");
    let value: unknown = undefined;
    let parses = true;
    try {
      value = JSON.parse(bytes.toString("utf8"));
    } catch {
      parses = false;
    }
    const validate = validators[subject];
    const valueAccepted = parses ? validate(value) : null;
    try {
      parseEventData(subject, bytes);
      report({ event: "verdict", index, accepted: true, valueAccepted });
    } catch (error) {
      if (!(error instanceof InvalidEventError)) throw error;
      report({ event: "verdict", index, accepted: false, valueAccepted, errors: error.errors });
    }
  });
}

const [mode, ...args] = process.argv.slice(2);
if (mode === "listen" && args.length === 3) {
  listen(args[0]!, args[1]!, args[2]!);
} else if (mode === "publish" && args.length === 4) {
  publish(args[0]!, args[1]!, args[2]!, args[3]!);
} else if (mode === "check" && args.length === 1) {
  check(args[0]!);
} else {
  process.stderr.write("usage: main listen|publish|check ...\n");
  process.exit(64);
}
