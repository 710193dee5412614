/** The data an event of subject `S` carries: `EventData<Subjects.TicketCreated>`. */
export type EventData<S extends Subjects> = EventOf<S>["data"];

/** A JSON Schema (draft 2020-12) as a plain, frozen JSON value. */
export type JsonSchema = { readonly [keyword: string]: unknown };

/** One reason a payload was rejected. */
export interface ValidationError {
  /** A JSON Pointer to the value at fault (`/ticket/price`); empty for the payload. */
  readonly path: string;
  /** What failed: a JSON Schema keyword (`required`, `type`, `minimum`, `format`, ...),
   * or `json`, `utf-8`, `unicode` for a payload that is not well-formed. */
  readonly keyword: string;
  readonly message: string;
}

/** Checks an event's data (a parsed JSON value); `errors` says why the last call
 * returned `false`. */
export interface Validator<T> {
  (data: unknown): data is T;
  errors: ValidationError[] | null;
}

/** Thrown by `parseEventData` for a payload a Python listener would reject too. */
export declare class InvalidEventError extends Error {
  constructor(subject: string, errors: readonly ValidationError[]);
  readonly subject: string;
  readonly errors: readonly ValidationError[];
}

/** Every subject, in the order of `Subjects`. */
export declare const SUBJECTS: readonly Subjects[];

/** The JSON Schema of each subject's data, also in `schemas/<subject>.json`. */
export declare const schemas: { readonly [S in Subjects]: JsonSchema };

/** A validator per subject. */
export declare const validators: { readonly [S in Subjects]: Validator<EventData<S>> };

/**
 * Parses a payload as it came off the wire (the bytes of `msg.getRawData()`, or text)
 * and returns the event's data, or throws `InvalidEventError`. What it accepts, a
 * Python listener accepts too: besides the schema it refuses bytes that are not UTF-8,
 * an integer written as `1.0`, strings that are not Unicode and JSON nested too deep.
 */
export declare function parseEventData<S extends Subjects>(
  subject: S,
  payload: string | Uint8Array,
): EventData<S>;
