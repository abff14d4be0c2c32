/** DI token for the TokenEndpoint adapter (HTTP to OAuth providers). */
export const TOKEN_ENDPOINT = Symbol('TOKEN_ENDPOINT');
