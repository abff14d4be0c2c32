import { Body, Controller, Get, Logger, Param, Post, Query, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { CONNECT_PAGE_HEADERS, formPageHeaders, renderHtml, type ConnectPage } from './connect-page.js';
import { parseCookies } from './connect-link.signer.js';
import { ConnectLinkService } from './connect-link.service.js';
import { ConnectService } from './connect.service.js';

/**
 * The connect flow's public pages: the link (its page, and its button's POST) and
 * the callback. Their URLs, forms and cookies carry secrets (the session id, the code, the
 * state, the browser binding), so nothing here logs a URL, a query, a body or a header, and
 * every answer, a refusal or a failure too, gets the same no-cache, no-script headers.
 */
@Controller()
export class ConnectController {
  private readonly logger = new Logger(ConnectController.name);

  constructor(
    private readonly connect: ConnectService,
    private readonly link: ConnectLinkService,
  ) {}

  @Get('connect/:session')
  async open(@Param('session') session: string, @Req() req: Request, @Res() res: Response): Promise<void> {
    this.send(res, await this.guarded(() => this.link.page(session, parseCookies(req.headers.cookie))));
  }

  @Post('connect/:session')
  async start(
    @Param('session') session: string,
    @Body() body: unknown,
    @Req() req: Request,
    @Res() res: Response,
  ): Promise<void> {
    const post = {
      formToken: typeof body === 'object' && body !== null ? (body as Record<string, unknown>).form_token : undefined,
      cookies: parseCookies(req.headers.cookie),
      origin: req.headers.origin,
      secFetchSite: headerValue(req.headers['sec-fetch-site']),
    };
    this.send(res, await this.guarded(() => this.link.begin(session, post)));
  }

  @Get('oauth/callback')
  async callback(@Query() query: Record<string, unknown>, @Req() req: Request, @Res() res: Response): Promise<void> {
    this.send(res, await this.guarded(() => this.connect.callback(query, parseCookies(req.headers.cookie))));
  }

  /** An unexpected error is logged once, by class only (its message could quote a query), and answered with a plain page. */
  private async guarded(step: () => Promise<ConnectPage>): Promise<ConnectPage> {
    try {
      return await step();
    } catch (error) {
      this.logger.error({ msg: 'connect page failed', error: error instanceof Error ? error.name : typeof error });
      return {
        kind: 'html',
        status: 500,
        title: 'Something went wrong',
        message: 'The connection could not be completed. Start again from your application.',
      };
    }
  }

  private send(res: Response, page: ConnectPage): void {
    res.set(page.kind === 'html' && page.form ? formPageHeaders(page.form) : CONNECT_PAGE_HEADERS);
    if (page.cookies?.length) res.append('set-cookie', page.cookies);
    if (page.kind === 'redirect') {
      res.redirect(page.status, page.location);
      return;
    }
    res.status(page.status).type('html').send(renderHtml(page));
  }
}

function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}
