import { describeAge, formatTime } from './format.js';

/** A long job an admin watches (a bulk action on members, an import from Keap): what it has done and since when. */
export interface ProgressState {
  done: number;
  total: number;
  /** ISO 8601. */
  startedAt: string;
  finishedAt: string | null;
  running: boolean;
}

/**
 * The figures of the progress partial (views/partials/progress.hbs): the bar's percentage, done of total, the rate and
 * the time left while it runs. Rendered with `{{> progress progress=... id="..." unit="members"}}`.
 */
export interface ProgressFigures {
  done: number;
  total: number;
  percent: number;
  doneText: string;
  totalText: string;
  rateText: string | undefined;
  /** "about 5 min left", "under a minute left". */
  timeLeft: string | undefined;
  started: string;
  finished: string | undefined;
}

export function progressFigures(state: ProgressState, now: number, unit: string): ProgressFigures {
  const started = Date.parse(state.startedAt);
  const end = state.finishedAt ? Date.parse(state.finishedAt) : now;
  const seconds = Math.max(1, (end - started) / 1000);
  const rate = state.done / seconds;
  const left = Math.max(0, state.total - state.done);
  return {
    done: state.done,
    total: state.total,
    percent: state.total === 0 ? 100 : Math.min(100, Math.floor((state.done / state.total) * 100)),
    doneText: state.done.toLocaleString('en'),
    totalText: state.total.toLocaleString('en'),
    // Under a second there is no rate worth showing (it would only restate the count).
    rateText: state.done > 0 && end - started >= 1000 ? `${rate < 10 ? rate.toFixed(1) : Math.round(rate).toLocaleString('en')} ${unit}/s` : undefined,
    timeLeft: state.running && rate > 0 ? timeLeftText((left / rate) * 1000) : undefined,
    started: formatTime(state.startedAt),
    finished: state.finishedAt ? formatTime(state.finishedAt) : undefined,
  };
}

function timeLeftText(ms: number): string {
  const age = describeAge(ms);
  return age === describeAge(0) ? `${age} left` : `about ${age} left`;
}
