import { Controller, Get, Logger, Param, Query, Res } from '@nestjs/common';
import type { Response } from 'express';
import { CONNECT_PAGE_HEADERS, renderHtml, type ConnectPage } from './connect-page.js';
import { ConnectService } from './connect.service.js';

/**
 * The connect flow's two public pages (SPEC §12). Their URLs carry secrets (the session id,
 * the code, the state), so nothing here logs a URL or a query, and every answer, a refusal
 * or a failure too, gets the same no-cache, no-referrer, no-script headers.
 */
@Controller()
export class ConnectController {
  private readonly logger = new Logger(ConnectController.name);

  constructor(private readonly connect: ConnectService) {}

  @Get('connect/:session')
  async open(@Param('session') session: string, @Res() res: Response): Promise<void> {
    this.send(res, await this.guarded(() => this.connect.redirect(session)));
  }

  @Get('oauth/callback')
  async callback(@Query() query: Record<string, unknown>, @Res() res: Response): Promise<void> {
    this.send(res, await this.guarded(() => this.connect.callback(query)));
  }

  /** An unexpected error is logged once, by class only (its message could quote a query), and answered with a plain page. */
  private async guarded(step: () => Promise<ConnectPage>): Promise<ConnectPage> {
    try {
      return await step();
    } catch (error) {
      this.logger.error({ msg: 'connect page failed', error: error instanceof Error ? error.name : typeof error });
      return { kind: 'html', status: 500, title: 'Something went wrong', message: 'The connection could not be completed. Start again from your application.' };
    }
  }

  private send(res: Response, page: ConnectPage): void {
    res.set(CONNECT_PAGE_HEADERS);
    if (page.kind === 'redirect') {
      res.redirect(page.status, page.location);
      return;
    }
    res.status(page.status).type('html').send(renderHtml(page));
  }
}
