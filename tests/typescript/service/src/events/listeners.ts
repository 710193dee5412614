import type { Message } from "node-nats-streaming";
import {
  OrderStatus,
  Subjects,
  type ExpirationCompleteEvent,
  type InvalidEventError,
  type OrderCancelledEvent,
  type OrderCreatedEvent,
  type PaymentCreatedEvent,
  type TicketCreatedEvent,
  type TicketUpdatedEvent,
} from "@ticketing/common-events";
import { Listener } from "../common/listener.js";
import { report } from "../report.js";

export const queueGroupName = "node-service";

abstract class ReportingListener<T extends { subject: Subjects; data: unknown }> extends Listener<T> {
  queueGroupName = queueGroupName;

  onMessage(data: T["data"], msg: Message): void {
    report({ event: "message", subject: this.subject, data });
    msg.ack();
  }

  onInvalid(error: InvalidEventError, msg: Message): void {
    report({ event: "rejected", subject: this.subject, errors: error.errors });
    msg.ack();
  }
}

export class TicketCreatedListener extends ReportingListener<TicketCreatedEvent> {
  subject: Subjects.TicketCreated = Subjects.TicketCreated;
}

export class TicketUpdatedListener extends ReportingListener<TicketUpdatedEvent> {
  subject: Subjects.TicketUpdated = Subjects.TicketUpdated;
}

export class OrderCreatedListener extends ReportingListener<OrderCreatedEvent> {
  subject: Subjects.OrderCreated = Subjects.OrderCreated;

  onMessage(data: OrderCreatedEvent["data"], msg: Message): void {
    // The enum is a value at run time, and the date is JavaScript's own format.
    const awaiting = data.status === OrderStatus.AwaitingPayment;
    const expiresAt = new Date(data.expiresAt).toISOString();
    report({ event: "message", subject: this.subject, data, awaiting, expiresAt });
    msg.ack();
  }
}

export class OrderCancelledListener extends ReportingListener<OrderCancelledEvent> {
  subject: Subjects.OrderCancelled = Subjects.OrderCancelled;
}

export class ExpirationCompleteListener extends ReportingListener<ExpirationCompleteEvent> {
  readonly subject = Subjects.ExpirationComplete;
}

export class PaymentCreatedListener extends ReportingListener<PaymentCreatedEvent> {
  subject: Subjects.PaymentCreated = Subjects.PaymentCreated;
}
