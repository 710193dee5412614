// What the service saw, as one JSON line per event on stdout, for the tests to read.
export function report(event: Record<string, unknown>): void {
  process.stdout.write(JSON.stringify(event) + "\n");
}
