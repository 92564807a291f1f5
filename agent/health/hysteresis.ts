/**
 * Rise/fall hysteresis, pure: a check counts as passing only after `rise` consecutive passes
 * and as failing only after `fall` consecutive failures; in between it keeps its verdict. It
 * starts not passing, so a booting node never contends before `rise` passes.
 */
export interface Hysteresis {
  readonly rise: number;
  readonly fall: number;
  readonly passing: boolean;
  readonly consecutiveOk: number;
  readonly consecutiveFail: number;
  readonly lastRunAt?: number;
}

export function initialHysteresis(limits: { rise: number; fall: number }): Hysteresis {
  return { rise: limits.rise, fall: limits.fall, passing: false, consecutiveOk: 0, consecutiveFail: 0 };
}

export function step(state: Hysteresis, result: { readonly ok: boolean }, nowMs: number): Hysteresis {
  const consecutiveOk = result.ok ? state.consecutiveOk + 1 : 0;
  const consecutiveFail = result.ok ? 0 : state.consecutiveFail + 1;
  let passing = state.passing;
  if (!passing && consecutiveOk >= state.rise) passing = true;
  if (passing && consecutiveFail >= state.fall) passing = false;
  return { ...state, passing, consecutiveOk, consecutiveFail, lastRunAt: nowMs };
}

/** The verdict and its counters in words: "3/3 ok", "passing, 1/3 failed", "rising, 1/2 ok". */
export function describeCounters(state: Hysteresis): string {
  const ok = `${Math.min(state.consecutiveOk, state.rise)}/${state.rise} ok`;
  const failed = `${Math.min(state.consecutiveFail, state.fall)}/${state.fall} failed`;
  if (state.lastRunAt === undefined) return `not run yet, 0/${state.rise} ok`;
  if (state.passing) return state.consecutiveFail > 0 ? `passing, ${failed}` : ok;
  return state.consecutiveOk > 0 ? `rising, ${ok}` : `failing, ${failed}`;
}
