// What a multi-step disk operation has made, undone in reverse when a later step fails, so a
// failure mid-way leaves no node, export, socket, key file, process or overlay behind.
export interface UndoStep {
  what: string;
  run: () => Promise<void> | void;
}

export class Undo {
  private readonly steps: UndoStep[] = [];

  /** Records how to take back something just made. */
  push(what: string, run: UndoStep['run']): void {
    this.steps.push({ what, run });
  }

  get size(): number {
    return this.steps.length;
  }

  /**
   * Runs every step, newest first; a step that fails does not stop the others. Returns what
   * could not be undone (empty when all went).
   */
  async run(log?: (message: string) => void): Promise<string[]> {
    const failed: string[] = [];
    for (let s = this.steps.pop(); s; s = this.steps.pop()) {
      try {
        await s.run();
      } catch (e) {
        const line = `${s.what}: ${(e as Error).message}`;
        failed.push(line);
        log?.(`undo failed: ${line}`);
      }
    }
    return failed;
  }

  /**
   * Runs `body` with this stack; on failure undoes everything on it and rethrows the failure,
   * with anything that could not be undone appended to its message. On success the steps stay,
   * for an owner that may take them back later.
   */
  async guard<T>(body: (undo: Undo) => Promise<T>, log?: (message: string) => void): Promise<T> {
    try {
      return await body(this);
    } catch (e) {
      const left = await this.run(log);
      if (left.length && e instanceof Error) e.message += ` (and undoing it failed: ${left.join('; ')})`;
      throw e;
    }
  }

  /** guard() with a fresh stack, for an operation that keeps what it made once it succeeds. */
  static guard<T>(body: (undo: Undo) => Promise<T>, log?: (message: string) => void): Promise<T> {
    return new Undo().guard(body, log);
  }
}
