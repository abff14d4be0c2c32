/**
 * A FIFO whose shift is O(1): an array read from a moving head, compacted once the dead
 * prefix outweighs the live part (Array#shift is O(n) on large arrays).
 */
class Fifo<T> {
  private items: (T | undefined)[] = [];
  private head = 0;

  get length(): number {
    return this.items.length - this.head;
  }

  push(item: T): void {
    this.items.push(item);
  }

  shift(): T | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head++] = undefined;
    if (this.head === this.items.length) {
      this.items = [];
      this.head = 0;
    } else if (this.head >= 1024 && this.head * 2 >= this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
    return item;
  }
}

type Job = () => void;

/**
 * A provider's request slots, shared fairly between tenants: at most `concurrency` tasks
 * run at once, and when a slot frees, the next task comes from the next tenant in turn
 * among those with work waiting (round-robin), each tenant's own tasks in arrival order.
 * So a tenant with a thousand tasks queued delays another tenant's single task by at most
 * one turn, never by the length of its backlog, which a single FIFO would. Every operation
 * is O(1) (amortized): a Map lookup, a push and a shift.
 */
export class FairShareLimiter {
  private running = 0;
  private waiting = 0;
  /** Each tenant's waiting tasks; a tenant is here exactly while it has some. */
  private readonly queues = new Map<string, Fifo<Job>>();
  /** Tenants with waiting tasks, in the order their turns come. */
  private readonly turns = new Fifo<string>();

  constructor(private readonly concurrency: number) {
    if (!Number.isInteger(concurrency) || concurrency < 1)
      throw new RangeError('concurrency must be an integer of at least 1');
  }

  /** Tasks holding a slot now. */
  get activeCount(): number {
    return this.running;
  }

  /** Tasks waiting for a slot, all tenants together. */
  get pendingCount(): number {
    return this.waiting;
  }

  /** Tasks of one tenant waiting for a slot. */
  pendingOf(tenant: string): number {
    return this.queues.get(tenant)?.length ?? 0;
  }

  /** Runs `task` in one of the slots, in `tenant`'s turn; settles as the task does. */
  run<T>(tenant: string, task: () => Promise<T>): Promise<T> {
    if (this.running < this.concurrency && this.waiting === 0) return this.start(task);
    return new Promise<T>((resolve, reject) => {
      let queue = this.queues.get(tenant);
      if (queue === undefined) {
        queue = new Fifo<Job>();
        this.queues.set(tenant, queue);
        this.turns.push(tenant);
      }
      queue.push(() => void this.start(task).then(resolve, reject));
      this.waiting++;
    });
  }

  private start<T>(task: () => Promise<T>): Promise<T> {
    this.running++;
    let result: Promise<T>;
    try {
      result = task();
    } catch (error) {
      // The task's own throw, passed on as it is, like a rejection it returned.
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors
      result = Promise.reject(error);
    }
    return result.then(
      (value) => {
        this.release();
        return value;
      },
      (error: unknown) => {
        this.release();
        throw error;
      },
    );
  }

  private release(): void {
    this.running--;
    while (this.running < this.concurrency && this.waiting > 0) {
      const tenant = this.turns.shift()!;
      const queue = this.queues.get(tenant)!;
      const job = queue.shift()!;
      this.waiting--;
      // Back to the end of the line while it has more; gone from the turns otherwise.
      if (queue.length > 0) this.turns.push(tenant);
      else this.queues.delete(tenant);
      job();
    }
  }
}
