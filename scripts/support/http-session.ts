/** Logging in over HTTP the way a browser does (CSRF cookie and form token, session cookie), for the benchmarks. */

/** A browser's cookies for one site. */
export class CookieJar {
  private readonly cookies = new Map<string, string>();

  keep(res: Response): void {
    for (const c of res.headers.getSetCookie()) {
      const [pair] = c.split(';');
      const [name, ...value] = pair!.split('=');
      this.cookies.set(name!.trim(), value.join('='));
    }
  }

  header(): string {
    return [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
  }
}

/** The `_csrf` value of the form on a page. */
export function formToken(html: string): string {
  const token = /name="_csrf" value="([^"]+)"/.exec(html)?.[1];
  if (!token) throw new Error('no _csrf field on the page');
  return token;
}

/** A login form loaded (GET), ready to be posted: the jar holds its CSRF cookie. */
export async function openLoginForm(url: string, path: '/login' | '/admin/login'): Promise<{ jar: CookieJar; token: string }> {
  const jar = new CookieJar();
  const form = await fetch(`${url}${path}`);
  jar.keep(form);
  return { jar, token: formToken(await form.text()) };
}

/** Posts a login form opened with `openLoginForm`; answers the response (303 on success) and keeps its cookies. */
export async function postLogin(
  url: string,
  path: '/login' | '/admin/login',
  form: { jar: CookieJar; token: string },
  login: string,
  password: string,
): Promise<Response> {
  const res = await fetch(`${url}${path}`, {
    method: 'POST',
    redirect: 'manual',
    headers: { 'content-type': 'application/x-www-form-urlencoded', cookie: form.jar.header() },
    body: new URLSearchParams({ _csrf: form.token, login, password }),
  });
  await res.arrayBuffer();
  form.jar.keep(res);
  return res;
}

/** The Cookie header of a logged-in administrator. */
export async function adminCookie(url: string, email: string, password: string): Promise<string> {
  const form = await openLoginForm(url, '/admin/login');
  const res = await postLogin(url, '/admin/login', form, email, password);
  if (res.status !== 303) throw new Error(`admin login failed: ${res.status}`);
  return form.jar.header();
}
