// The course's abstract Listener over node-nats-streaming, reading payloads through the
// package's validator: what it hands to onMessage, a Python listener accepts too.
import type { Message, Stan, Subscription } from "node-nats-streaming";
import { InvalidEventError, parseEventData, type Subjects } from "@ticketing/common-events";

interface Event {
  subject: Subjects;
  data: unknown;
}

export abstract class Listener<T extends Event> {
  abstract subject: T["subject"];
  abstract queueGroupName: string;
  abstract onMessage(data: T["data"], msg: Message): void;
  protected client: Stan;
  protected ackWait = 5 * 1000;

  constructor(client: Stan) {
    this.client = client;
  }

  subscriptionOptions() {
    return this.client
      .subscriptionOptions()
      .setDeliverAllAvailable()
      .setManualAckMode(true)
      .setAckWait(this.ackWait)
      .setDurableName(this.queueGroupName);
  }

  listen(): Subscription {
    const subscription = this.client.subscribe(
      this.subject,
      this.queueGroupName,
      this.subscriptionOptions(),
    );
    subscription.on("message", (msg: Message) => {
      let parsedData: T["data"];
      try {
        parsedData = this.parseMessage(msg);
      } catch (error) {
        if (!(error instanceof InvalidEventError)) throw error;
        this.onInvalid(error, msg);
        return;
      }
      this.onMessage(parsedData, msg);
    });
    return subscription;
  }

  parseMessage(msg: Message): T["data"] {
    return parseEventData(this.subject, msg.getRawData());
  }

  // A payload that can never be handled is acknowledged, or it would come back forever.
  onInvalid(error: InvalidEventError, msg: Message): void {
    console.error(error.message);
    msg.ack();
  }
}
