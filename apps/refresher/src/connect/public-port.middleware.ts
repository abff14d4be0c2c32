import type { NextFunction, Request, Response } from 'express';

const PUBLIC_PATHS = /^\/(connect\/[^/]+|oauth\/callback)\/?$/;

/**
 * With PUBLIC_HTTP_PORT set, one express app listens on two ports and this decides by the
 * port a request came in on: the public port serves the connect pages only, the private
 * port (HTTP_PORT) everything else, so health and metrics stay off the internet and the
 * pages off the internal network's scrapers.
 */
export function splitByPort(publicPort: number) {
  return (req: Request, res: Response, next: NextFunction): void => {
    const onPublicPort = req.socket.localPort === publicPort;
    if (onPublicPort === PUBLIC_PATHS.test(req.path)) {
      next();
      return;
    }
    res.status(404).set({ 'cache-control': 'no-store' }).type('text').send('not found');
  };
}
