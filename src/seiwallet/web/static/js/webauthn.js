// Passkeys for seiwallet: registration and approval ceremonies against the server's JSON API.
//
// The server speaks the WebAuthn JSON forms (base64url for binary fields); this module turns
// them into the ArrayBuffers navigator.credentials wants and back. Errors are thrown as
// WebAuthnFlowError with a `reason` ("cancelled", "already_registered", "unsupported",
// "network", "server") so the page can say something useful; server problems (RFC 9457) carry
// their `detail`/`title` in `message`.

/** @param {string} value base64url, padded or not */
export function base64urlToBuffer(value) {
  const base64 = value.replace(/-/g, "+").replace(/_/g, "/");
  const padded = base64 + "=".repeat((4 - (base64.length % 4)) % 4);
  const binary = atob(padded);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i += 1) bytes[i] = binary.charCodeAt(i);
  return bytes.buffer;
}

/** @param {ArrayBuffer | ArrayBufferView} buffer */
export function bufferToBase64url(buffer) {
  const bytes =
    buffer instanceof ArrayBuffer
      ? new Uint8Array(buffer)
      : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
  let binary = "";
  for (let i = 0; i < bytes.length; i += 1) binary += String.fromCharCode(bytes[i]);
  return btoa(binary).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

export class WebAuthnFlowError extends Error {
  /**
   * @param {"cancelled"|"already_registered"|"unsupported"|"network"|"server"} reason
   * @param {string} [message] a human message from the server, if it sent one
   * @param {{status?: number, problem?: object, cause?: unknown}} [extra]
   */
  constructor(reason, message = "", extra = {}) {
    super(message || reason, { cause: extra.cause });
    this.name = "WebAuthnFlowError";
    this.reason = reason;
    this.serverMessage = message;
    this.status = extra.status;
    this.problem = extra.problem;
  }
}

export function passkeysSupported() {
  return (
    typeof window.PublicKeyCredential === "function" &&
    typeof navigator.credentials?.create === "function"
  );
}

function csrfToken() {
  return document.querySelector('meta[name="csrf-token"]')?.getAttribute("content") ?? "";
}

/**
 * POST JSON; resolve to the JSON body, or throw WebAuthnFlowError for a problem response.
 * @param {{headers?: Record<string, string>}} [options] extra headers (an Idempotency-Key)
 */
export async function postJSON(url, body, { headers = {} } = {}) {
  let response;
  try {
    response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: {
        ...headers,
        "Content-Type": "application/json",
        Accept: "application/json, application/problem+json",
        "X-CSRF-Token": csrfToken(),
      },
      body: JSON.stringify(body ?? {}),
    });
  } catch (cause) {
    throw new WebAuthnFlowError("network", "", { cause });
  }
  let data = null;
  const text = await response.text();
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = null;
    }
  }
  if (!response.ok) {
    const message = (data && (data.detail || data.title)) || "";
    throw new WebAuthnFlowError("server", String(message), {
      status: response.status,
      problem: data ?? undefined,
    });
  }
  return data ?? {};
}

/** Map a DOMException from navigator.credentials to our reasons. */
function credentialError(error, ceremony) {
  if (error instanceof WebAuthnFlowError) return error;
  const name = error && typeof error === "object" ? error.name : "";
  if (name === "NotAllowedError" || name === "AbortError") {
    return new WebAuthnFlowError("cancelled", "", { cause: error });
  }
  if (name === "InvalidStateError" && ceremony === "create") {
    return new WebAuthnFlowError("already_registered", "", { cause: error });
  }
  if (name === "NotSupportedError" || name === "SecurityError") {
    return new WebAuthnFlowError("unsupported", "", { cause: error });
  }
  return new WebAuthnFlowError("server", "", { cause: error });
}

function creationOptionsFromJSON(options) {
  return {
    ...options,
    challenge: base64urlToBuffer(options.challenge),
    user: { ...options.user, id: base64urlToBuffer(options.user.id) },
    excludeCredentials: (options.excludeCredentials ?? []).map((credential) => ({
      ...credential,
      id: base64urlToBuffer(credential.id),
    })),
  };
}

function requestOptionsFromJSON(options) {
  const converted = { ...options, challenge: base64urlToBuffer(options.challenge) };
  if (options.allowCredentials) {
    converted.allowCredentials = options.allowCredentials.map((credential) => ({
      ...credential,
      id: base64urlToBuffer(credential.id),
    }));
  }
  return converted;
}

/**
 * Create a passkey: options from the server, the phone's prompt, the attestation back.
 * @returns {Promise<{redirect?: string}>}
 */
export async function registerPasskey({ optionsUrl, finishUrl, label }) {
  if (!passkeysSupported()) throw new WebAuthnFlowError("unsupported");
  const { options } = await postJSON(optionsUrl, {});
  let credential;
  try {
    credential = await navigator.credentials.create({
      publicKey: creationOptionsFromJSON(options),
    });
  } catch (error) {
    throw credentialError(error, "create");
  }
  if (!credential) throw new WebAuthnFlowError("cancelled");
  const response = credential.response;
  return postJSON(finishUrl, {
    credential: {
      id: credential.id,
      rawId: bufferToBase64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: bufferToBase64url(response.clientDataJSON),
        attestationObject: bufferToBase64url(response.attestationObject),
        transports:
          typeof response.getTransports === "function" ? response.getTransports() : [],
      },
      authenticatorAttachment: credential.authenticatorAttachment ?? null,
      clientExtensionResults: credential.getClientExtensionResults?.() ?? {},
    },
    label,
  });
}

/**
 * Approve an action with a passkey: the server's challenge for it, the phone's prompt, the
 * assertion back with the approval's id (and `finishBody`'s fields, when the finishing
 * endpoint needs more, such as a device login's user code).
 * @returns {Promise<{redirect?: string}>}
 */
export async function approveWithPasskey({ optionsUrl, optionsBody, finishUrl, finishBody }) {
  if (!passkeysSupported()) throw new WebAuthnFlowError("unsupported");
  const { options, approval_id: approvalId } = await postJSON(optionsUrl, optionsBody ?? {});
  let credential;
  try {
    credential = await navigator.credentials.get({
      publicKey: requestOptionsFromJSON(options),
    });
  } catch (error) {
    throw credentialError(error, "get");
  }
  if (!credential) throw new WebAuthnFlowError("cancelled");
  const response = credential.response;
  return postJSON(finishUrl, {
    ...(finishBody ?? {}),
    approval_id: approvalId,
    credential: {
      id: credential.id,
      rawId: bufferToBase64url(credential.rawId),
      type: credential.type,
      response: {
        clientDataJSON: bufferToBase64url(response.clientDataJSON),
        authenticatorData: bufferToBase64url(response.authenticatorData),
        signature: bufferToBase64url(response.signature),
        userHandle: response.userHandle ? bufferToBase64url(response.userHandle) : null,
      },
    },
  });
}
