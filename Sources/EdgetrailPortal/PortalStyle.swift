/// The portal's one stylesheet (served at /static/portal.css; no build step).
enum PortalStyle {
    static let css = """
        :root { --fg: #1d2330; --muted: #5b6475; --line: #d9dee8; --accent: #1f6feb; --ok: #1a7f37; --bad: #cf222e; --warn: #9a6700; }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.45 system-ui, sans-serif; color: var(--fg); background: #f6f8fb; }
        header { display: flex; align-items: center; gap: 1.5rem; padding: .6rem 1.2rem; background: #0f1724; color: #fff; }
        header a { color: #cfd8e6; text-decoration: none; }
        header a[aria-current] { color: #fff; font-weight: 600; border-bottom: 2px solid var(--accent); }
        header .brand { color: #fff; font-weight: 700; font-size: 1.1rem; }
        nav { display: flex; align-items: center; gap: 1rem; flex: 1; }
        nav .who { margin-left: auto; color: #9fb0c8; }
        main { padding: 1rem 1.5rem 3rem; max-width: 1400px; }
        h1 { font-size: 1.4rem; margin: .3rem 0 1rem; }
        h2 { font-size: 1.1rem; margin: 1.4rem 0 .5rem; }
        table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid var(--line); }
        th, td { text-align: left; padding: .35rem .6rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { background: #eef1f6; font-weight: 600; }
        .card { background: #fff; border: 1px solid var(--line); padding: .8rem 1rem; display: flex; flex-wrap: wrap; gap: .8rem; align-items: end; }
        .card.narrow { flex-direction: column; align-items: stretch; max-width: 360px; }
        label { display: flex; flex-direction: column; gap: .2rem; color: var(--muted); }
        input, select, textarea, button { font: inherit; padding: .3rem .5rem; }
        button { background: var(--accent); color: #fff; border: 0; border-radius: 4px; cursor: pointer; }
        form.inline { display: inline; }
        form.danger button, .delete-cnf { background: var(--bad); }
        header button { background: transparent; border: 1px solid #3a4760; color: #cfd8e6; }
        .flash { background: #e6f4ea; border: 1px solid #b7dfc2; padding: .5rem .8rem; }
        .error { color: var(--bad); }
        p.error { background: #fdecee; border: 1px solid #f3c1c6; padding: .5rem .8rem; }
        .state { display: inline-block; padding: 0 .4rem; border-radius: 3px; font-size: .85em; background: #eef1f6; }
        .state.healthy, .state.running { background: #e6f4ea; color: var(--ok); }
        .state.down, .state.unhealthy, .state.error, .state.stopped { background: #fdecee; color: var(--bad); }
        .state.degraded, .state.starting, .state.restarting { background: #fff4d6; color: var(--warn); }
        dl.figures { display: grid; grid-template-columns: max-content max-content; gap: .2rem 1rem; }
        dl.figures dd { margin: 0; font-variant-numeric: tabular-nums; }
        code { background: #eef1f6; padding: 0 .25rem; }
        .waterfall { background: #fff; border: 1px solid var(--line); }
        .waterfall .axis, .waterfall summary { display: grid; grid-template-columns: 34% 1fr 6rem; align-items: center; }
        .waterfall .axis { border-bottom: 1px solid var(--line); color: var(--muted); font-size: .8rem; height: 1.6rem; }
        .waterfall .axis .track span { position: absolute; transform: translateX(-50%); white-space: nowrap; }
        .waterfall .track { position: relative; height: 1.1rem; }
        .waterfall details { border-bottom: 1px solid #f0f2f6; }
        .waterfall summary { cursor: pointer; list-style: none; padding: .1rem .4rem; }
        .waterfall summary::-webkit-details-marker { display: none; }
        .waterfall .label { overflow: hidden; text-overflow: ellipsis; white-space: nowrap; }
        .waterfall .label small { color: var(--muted); }
        .waterfall .took { text-align: right; color: var(--muted); font-variant-numeric: tabular-nums; }
        .waterfall .bar { position: absolute; top: .2rem; height: .7rem; background: #5b8def; border-radius: 2px; min-width: 2px; }
        .waterfall .flow .bar { background: #8250df; }
        .waterfall .error .bar { background: var(--bad); }
        .waterfall .mark { position: absolute; top: .1rem; width: .7rem; height: .7rem; margin-left: -.35rem; transform: rotate(45deg); background: #bf8700; }
        .waterfall dl { display: grid; grid-template-columns: max-content 1fr; gap: .1rem .8rem; margin: .3rem 1rem .6rem 2rem; font-size: .9em; }
        .waterfall dd { margin: 0; word-break: break-all; white-space: pre-wrap; }
        fieldset.file { border: 1px solid var(--line); background: #fff; margin: .8rem 0; padding: .4rem .8rem .8rem; }
        fieldset.file legend { font-family: ui-monospace, monospace; color: var(--muted); }
        textarea { width: 100%; font: 13px/1.45 ui-monospace, SFMono-Regular, Menlo, monospace; white-space: pre; overflow-wrap: normal; overflow-x: auto; tab-size: 4; }
        ul.problems { font-family: ui-monospace, monospace; padding-left: 1.2rem; }
        ul.problems li.error { color: var(--bad); }
        ul.problems li.warning { color: var(--warn); }
        a.button { display: inline-block; background: var(--accent); color: #fff; padding: .3rem .7rem; border-radius: 4px; text-decoration: none; }
        .inline-check, .inline-field { display: inline-flex; flex-direction: row; gap: .3rem; align-items: center; font-size: .9em; }
        #progress li { font-family: ui-monospace, monospace; }
        .panels { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1rem; }
        figure.panel { margin: 0; background: #fff; border: 1px solid var(--line); padding: .5rem .7rem; }
        figure.panel figcaption { font-weight: 600; margin-bottom: .3rem; }
        figure.panel svg { width: 100%; height: auto; }
        figure.panel .grid { stroke: #eef1f6; }
        figure.panel .tick { font-size: 10px; fill: var(--muted); text-anchor: end; }
        figure.panel .tick.time { text-anchor: middle; }
        figure.panel .empty { color: var(--muted); font-size: .9em; }
        ul.legend { list-style: none; padding: 0; margin: .2rem 0 0; display: flex; flex-wrap: wrap; gap: .2rem 1rem; font-size: .85em; }
        ul.legend i { display: inline-block; width: .8rem; height: .25rem; margin-right: .3rem; vertical-align: middle; }
        #service-graph { background: #fff; border: 1px solid var(--line); max-width: 100%; height: auto; }
        #service-graph .service { fill: #dbe7ff; stroke: var(--accent); }
        #service-graph .service-label, #service-graph .edge-label { font-size: 12px; text-anchor: middle; fill: var(--fg); }
        #service-graph .edge { stroke: #6e7781; stroke-width: 1.5; }
        #service-graph .edge.failing { stroke: var(--bad); }
        """
}
