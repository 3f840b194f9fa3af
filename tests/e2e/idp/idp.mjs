// The OpenID provider the end-to-end tests sign in at: panva's oidc-provider (a certified OpenID
// Provider) over HTTPS on loopback, with its own login page checking the passwords of the accounts in a
// JSON file that the test may rewrite at any time (groups changed, an account disabled), the device
// flow, refresh tokens, and a "tamper" file through which a test makes the token endpoint hand out a
// crafted ID token (wrong audience, wrong issuer, expired, wrong nonce, a bad signature, an unknown
// key id), re-signed here so that only the named defect is wrong.
//
// Usage: node idp.mjs CONFIG.json, where CONFIG holds { port, issuer, cert, key, accounts, tamper,
// clients: [{ client_id, client_secret, redirect_uris }] }. Prints "listening" once it serves.

import { readFileSync, existsSync } from 'node:fs';
import { createServer } from 'node:https';
import { randomUUID } from 'node:crypto';

import Provider from 'oidc-provider';
import { CompactSign, decodeProtectedHeader, exportJWK, generateKeyPair, importJWK } from 'jose';

const config = JSON.parse(readFileSync(process.argv[2], 'utf8'));

function accounts() {
  return JSON.parse(readFileSync(config.accounts, 'utf8'));
}

// The account, unless it is unknown or disabled: oidc-provider then refuses its refresh tokens and
// userinfo, which is what a gateway's re-check must notice.
function liveAccount(id) {
  const account = accounts()[id];
  return account && !account.disabled ? account : undefined;
}

async function signingKey() {
  const { privateKey } = await generateKeyPair('RS256', { extractable: true });
  const jwk = await exportJWK(privateKey);
  return { ...jwk, kid: `key-${randomUUID()}`, alg: 'RS256', use: 'sig' };
}

const published = await signingKey();

const provider = new Provider(config.issuer, {
  clients: config.clients.map((client) => ({
    ...client,
    grant_types: ['authorization_code', 'refresh_token', 'urn:ietf:params:oauth:grant-type:device_code'],
    response_types: ['code'],
  })),
  jwks: { keys: [published] },
  cookies: { keys: [randomUUID()] },
  claims: {
    openid: ['sub'],
    profile: ['preferred_username', 'name'],
    email: ['email', 'email_verified'],
    groups: ['groups'],
  },
  scopes: ['openid', 'offline_access', 'profile', 'email', 'groups'],
  conformIdTokenClaims: false,
  features: {
    devInteractions: { enabled: false },
    deviceFlow: { enabled: true },
    revocation: { enabled: true },
  },
  issueRefreshToken: async (_ctx, client) => client.grantTypeAllowed('refresh_token'),
  ttl: { AccessToken: 600, IdToken: 600, RefreshToken: 3600, DeviceCode: 600, Interaction: 600, Session: 3600, Grant: 3600 },
  interactions: { url: (_ctx, interaction) => `/interaction/${interaction.uid}` },
  async findAccount(_ctx, id) {
    const account = liveAccount(id);
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        const now = liveAccount(id) ?? account;
        return {
          sub: id,
          preferred_username: now.username ?? id,
          name: now.name ?? id,
          email: now.email,
          email_verified: true,
          groups: now.groups ?? [],
        };
      },
    };
  },
});

// The token endpoint's answers, changed as the tamper file says.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path !== '/token' || !ctx.body || typeof ctx.body.id_token !== 'string') return;
  if (!existsSync(config.tamper)) return;
  const { mode } = JSON.parse(readFileSync(config.tamper, 'utf8'));
  if (!mode) return;
  const [, payloadPart] = ctx.body.id_token.split('.');
  const payload = JSON.parse(Buffer.from(payloadPart, 'base64url').toString());
  const header = decodeProtectedHeader(ctx.body.id_token);
  const now = Math.floor(Date.now() / 1000);
  let key = await importJWK(published, 'RS256');
  switch (mode) {
    case 'wrong_audience': payload.aud = 'another-client'; break;
    case 'wrong_issuer': payload.iss = `${config.issuer}/elsewhere`; break;
    case 'expired': payload.iat = now - 1200; payload.exp = now - 600; break;
    case 'wrong_nonce': payload.nonce = 'not-the-nonce-that-was-sent'; break;
    case 'bad_signature': key = await importJWK(await signingKey(), 'RS256'); break;
    case 'unknown_kid': {
      const other = await signingKey();
      header.kid = other.kid;
      key = await importJWK(other, 'RS256');
      break;
    }
    default: throw new Error(`unknown tamper mode ${mode}`);
  }
  ctx.body.id_token = await new CompactSign(Buffer.from(JSON.stringify(payload)))
    .setProtectedHeader(header)
    .sign(key);
});

function escape(text) {
  return String(text).replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function page(res, title, body) {
  res.statusCode = 200;
  res.setHeader('content-type', 'text/html; charset=utf-8');
  res.end(`<!DOCTYPE html><html><head><meta charset="utf-8"><title>${escape(title)}</title></head><body><h1>${escape(title)}</h1>${body}</body></html>`);
}

async function formBody(req) {
  let text = '';
  for await (const chunk of req) {
    text += chunk;
    if (text.length > 10000) throw new Error('form too large');
  }
  return new URLSearchParams(text);
}

// The provider's own login and consent pages.
async function interaction(req, res) {
  const details = await provider.interactionDetails(req, res);
  const { uid, prompt, params } = details;
  if (prompt.name === 'login') {
    if (req.method === 'POST') {
      const form = await formBody(req);
      const id = form.get('login');
      const account = liveAccount(id);
      if (!account || account.password !== form.get('password')) {
        return page(res, 'Sign in to TestIdP', `<p id="idp-error">Wrong username or password.</p>${loginForm(uid)}`);
      }
      return provider.interactionFinished(req, res, { login: { accountId: id } }, { mergeWithLastSubmission: false });
    }
    return page(res, 'Sign in to TestIdP', `<p>Signing in to ${escape(params.client_id)}</p>${loginForm(uid)}`);
  }
  // Consent: every asked scope and claim is granted (the test provider trusts its clients).
  const grant = details.grantId
    ? await provider.Grant.find(details.grantId)
    : new provider.Grant({ accountId: details.session.accountId, clientId: params.client_id });
  const missing = prompt.details;
  if (missing.missingOIDCScope) grant.addOIDCScope(missing.missingOIDCScope.join(' '));
  if (missing.missingOIDCClaims) grant.addOIDCClaims(missing.missingOIDCClaims);
  if (missing.missingResourceScopes) {
    for (const [indicator, scopes] of Object.entries(missing.missingResourceScopes)) {
      grant.addResourceScope(indicator, scopes.join(' '));
    }
  }
  const grantId = await grant.save();
  return provider.interactionFinished(req, res, { consent: { grantId } }, { mergeWithLastSubmission: true });
}

function loginForm(uid) {
  return `<form method="post" action="/interaction/${escape(uid)}">
    <label>Username <input name="login" id="idp-login" autocomplete="off" required></label>
    <label>Password <input name="password" id="idp-password" type="password" required></label>
    <button type="submit" id="idp-submit">Sign in</button></form>`;
}

const callback = provider.callback();
const server = createServer(
  { cert: readFileSync(config.cert), key: readFileSync(config.key) },
  (req, res) => {
    if (req.url.startsWith('/interaction/')) {
      interaction(req, res).catch((error) => {
        res.statusCode = 500;
        res.end(`interaction failed: ${error.message}`);
      });
      return;
    }
    callback(req, res);
  },
);
server.listen(config.port, '127.0.0.1', () => {
  console.log('listening');
});
