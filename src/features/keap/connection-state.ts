import { formatTime } from '../../web/format.js';
import type { KeapClient } from './client.js';
import type { KeapLimitFigures } from './types.js';

/** How memberhook reaches Keap right now, and what Keap last said about its limits (dashboard and Keap settings). */
export interface KeapState {
  state: 'api_key' | 'oauth_connected' | 'oauth_not_connected' | 'not_configured';
  label: string;
  /** With state api_key: where the key comes from. */
  keySource: 'environment' | 'stored' | null;
  apiUrl: string;
  pausedUntil: string | null;
  pauseReason: string | null;
  report: { at: string; groups: Array<{ name: string; figures: string }> } | null;
}

export function describeKeapConnection(keap: KeapClient, apiUrl: string, keySource: () => 'environment' | 'stored' | undefined): KeapState {
  const mode = keap.authMode;
  const state: KeapState['state'] =
    mode === 'key' ? 'api_key' : mode === 'oauth' ? (keap.oauth?.connected ? 'oauth_connected' : 'oauth_not_connected') : 'not_configured';
  const source = state === 'api_key' ? (keySource() ?? null) : null;
  const label =
    state === 'api_key'
      ? source === 'stored' ? 'API key (stored in settings)' : 'API key (from KEAP_API_KEY)'
      : { oauth_connected: 'OAuth connected', oauth_not_connected: 'OAuth set up, not connected yet', not_configured: 'Not configured' }[state];
  const report = keap.limiter.lastReported;
  const pausedUntil = keap.limiter.pausedUntil;
  return {
    state,
    label,
    keySource: source,
    apiUrl,
    pausedUntil: pausedUntil === null ? null : formatTime(new Date(pausedUntil).toISOString()),
    pauseReason: keap.limiter.pauseReason,
    report: report && {
      at: formatTime(new Date(report.at).toISOString()),
      groups: [
        { name: 'Product throttle', windows: report.productThrottle },
        { name: 'Product quota', windows: report.productQuota },
        { name: 'Tenant throttle', windows: report.tenantThrottle },
      ].flatMap(({ name, windows }) => windows.map((figures) => ({ name, figures: describeFigures(figures) }))),
    },
  };
}

/** e.g. "7 of 10 left per second (3 used)". */
function describeFigures(f: KeapLimitFigures): string {
  const window = f.timeUnit ? ` per ${f.interval && f.interval !== 1 ? `${f.interval} ` : ''}${f.timeUnit.toLowerCase()}` : '';
  const amount = f.available !== null && f.limit !== null ? `${f.available} of ${f.limit} left` : f.available !== null ? `${f.available} left` : f.limit !== null ? `limit ${f.limit}` : 'no figures';
  const used = f.used !== null ? ` (${f.used} used)` : '';
  const resets = f.expiryTime !== null ? `, resets ${formatTime(new Date(f.expiryTime).toISOString())}` : '';
  return `${amount}${window}${used}${resets}`;
}
