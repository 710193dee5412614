// The course's abstract Publisher; it refuses data a Python listener would reject.
import type { Stan } from "node-nats-streaming";
import { InvalidEventError, validators, type Subjects } from "@ticketing/common-events";

interface Event {
  subject: Subjects;
  data: unknown;
}

export abstract class Publisher<T extends Event> {
  abstract subject: T["subject"];
  protected client: Stan;

  constructor(client: Stan) {
    this.client = client;
  }

  publish(data: T["data"]): Promise<void> {
    const validate = validators[this.subject];
    if (!validate(data)) {
      return Promise.reject(new InvalidEventError(this.subject, validate.errors ?? []));
    }
    return new Promise((resolve, reject) => {
      this.client.publish(this.subject, JSON.stringify(data), (err) => {
        if (err) {
          return reject(err);
        }
        resolve();
      });
    });
  }
}
