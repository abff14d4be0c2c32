/** Plain, colourless output: readable in a terminal, a CI log or a file. */
export class DemoLog {
  private readonly started = Date.now();

  line(who: string, message: string): void {
    const t = ((Date.now() - this.started) / 1000).toFixed(1).padStart(6);
    process.stdout.write(`[${t}s] ${who.padEnd(11)} ${message}\n`);
  }

  section(title: string): void {
    process.stdout.write(`\n== ${title} ==\n`);
  }

  elapsedSeconds(): number {
    return (Date.now() - this.started) / 1000;
  }
}

/** First and last characters only: enough to tell tokens apart, never enough to use one. */
export function preview(token: string): string {
  return token.length > 12 ? `${token.slice(0, 6)}…${token.slice(-3)}` : '***';
}
