//! Drawing the explorer: predictions on top, the layer tree on the left, the view on the right,
//! the status line at the bottom; help and prompts over them.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{
    Block, Borders, Clear, Gauge, List, ListItem, ListState, Paragraph, Tabs, Wrap,
};
use ratatui::Frame;

use super::app::{App, PromptKind};
use super::graphics::Graphics;
use super::view::{Mode, ViewContent, ViewState};

/// Smallest terminal the layout fits in.
pub const MIN_SIZE: (u16, u16) = (60, 16);

pub const HELP: &[(&str, &str)] = &[
    ("j k / arrows", "move in the layer tree"),
    ("g G", "first / last layer"),
    ("l h / arrows", "open / close a module"),
    ("Tab, 1-4", "Activations, CAM, Filters, Info"),
    (
        "[ ]",
        "previous / next page of channels (or channel, enlarged)",
    ),
    ("Enter, Esc", "enlarge one channel / back to the grid"),
    (
        "c",
        "target class: #N for the N-th prediction, an index or a label",
    ),
    ("m", "next CAM method"),
    ("v", "compare CAMs: top classes, every method, off"),
    ("p", "next colormap"),
    ("o", "open another image (Tab completes the path)"),
    ("/", "search layers by name"),
    ("P", "show parameter counts"),
    ("s", "save the view as PNG"),
    ("?", "this help"),
    (
        "Ctrl-C",
        "cancel the job in progress; quit when there is none",
    ),
    ("q", "quit"),
];

pub fn draw(frame: &mut Frame, app: &App, graphics: &mut Graphics) {
    let area = frame.area();
    if area.width < MIN_SIZE.0 || area.height < MIN_SIZE.1 {
        let msg = format!(
            "terminal too small: {}x{}, convscope needs {}x{}",
            area.width, area.height, MIN_SIZE.0, MIN_SIZE.1
        );
        frame.render_widget(Paragraph::new(msg).wrap(Wrap { trim: true }), area);
        return;
    }
    let [top, middle, bottom] = Layout::vertical([
        Constraint::Length(3),
        Constraint::Min(5),
        Constraint::Length(2),
    ])
    .areas(area);
    draw_predictions(frame, app, top);
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(38), Constraint::Percentage(62)]).areas(middle);
    draw_tree(frame, app, left);
    draw_view(frame, app, right, graphics);
    draw_status(frame, app, bottom, graphics);
    if app.help {
        draw_help(frame, area);
    }
}

fn draw_predictions(frame: &mut Frame, app: &App, area: Rect) {
    let text = match (&app.prediction, &app.image_error) {
        (None, Some(e)) => Line::styled(
            format!("error: {e}; press o to open an image"),
            Style::new().fg(Color::Red),
        ),
        (None, None) => Line::from(format!("loading {} ...", app.image_path.display())),
        (Some(p), _) => {
            let mut spans = vec![];
            for (rank, (i, prob)) in p.top(5).into_iter().enumerate() {
                let style = if rank == 0 {
                    Style::new().add_modifier(Modifier::BOLD)
                } else {
                    Style::new()
                };
                spans.push(Span::styled(
                    format!("{}. {} {:.1}%", rank + 1, app.labels[i], prob * 100.0),
                    style,
                ));
                spans.push(Span::raw("   "));
            }
            Line::from(spans)
        }
    };
    let title = format!(" {} ", app.image_path.display());
    frame.render_widget(
        Paragraph::new(text).block(Block::default().borders(Borders::ALL).title(title)),
        area,
    );
}

fn shape_text(shape: &[usize]) -> String {
    shape[1..]
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("x")
}

fn draw_tree(frame: &mut Frame, app: &App, area: Rect) {
    let items: Vec<ListItem> = app
        .rows
        .iter()
        .map(|r| {
            let marker = if !r.has_children {
                "  "
            } else if r.expanded {
                "▾ "
            } else {
                "▸ "
            };
            let kind = if r.has_children {
                ""
            } else {
                app.kinds[r.node]
            };
            let mut spans = vec![
                Span::raw(format!("{}{marker}", "  ".repeat(r.depth))),
                Span::styled(r.label.clone(), Style::new().add_modifier(Modifier::BOLD)),
                Span::styled(format!(" {kind}"), Style::new().fg(Color::Cyan)),
                Span::styled(
                    format!(" {}", shape_text(&app.shapes[r.node])),
                    Style::new().fg(Color::DarkGray),
                ),
            ];
            if app.show_parameters && r.parameters > 0 {
                spans.push(Span::styled(
                    format!(" {}p", r.parameters),
                    Style::new().fg(Color::Yellow),
                ));
            }
            ListItem::new(Line::from(spans))
        })
        .collect();
    let title = format!(" {} ({}) ", app.model_name, app.arch);
    let list = List::new(items)
        .block(Block::default().borders(Borders::ALL).title(title))
        .highlight_style(Style::new().bg(Color::Blue).fg(Color::White))
        .highlight_symbol("> ");
    let mut state = ListState::default().with_selected(Some(app.selected));
    frame.render_stateful_widget(list, area, &mut state);
}

fn draw_view(frame: &mut Frame, app: &App, area: Rect, graphics: &mut Graphics) {
    let block = Block::default()
        .borders(Borders::ALL)
        .title(format!(" {} ", app.selected_row().path));
    let inner = block.inner(area);
    frame.render_widget(block, area);
    let [tabs_area, caption_area, body] = Layout::vertical([
        Constraint::Length(1),
        Constraint::Length(1),
        Constraint::Min(1),
    ])
    .areas(inner);
    let titles: Vec<String> = Mode::ALL
        .iter()
        .enumerate()
        .map(|(i, m)| format!("{} {}", i + 1, m.title()))
        .collect();
    let selected = Mode::ALL.iter().position(|&m| m == app.mode).unwrap_or(0);
    frame.render_widget(
        Tabs::new(titles)
            .select(selected)
            .highlight_style(Style::new().fg(Color::Yellow).add_modifier(Modifier::BOLD)),
        tabs_area,
    );
    let current = app.view.key() == Some(&app.wanted_view());
    match &app.view {
        ViewState::Computing { done, total, .. } if current => {
            frame.render_widget(Paragraph::new("computing ..."), caption_area);
            if *total > 0 {
                let gauge = Gauge::default()
                    .ratio(*done as f64 / *total as f64)
                    .label(format!("{done}/{total} steps"));
                frame.render_widget(gauge, Rect { height: 1, ..body });
            }
        }
        ViewState::Ready { content, .. } => match content {
            ViewContent::Picture(rendered) => {
                let image = &rendered.picture;
                // One caption: the picture's, or that the next one is on its way.
                let caption = if current {
                    rendered.caption.as_str()
                } else {
                    "computing ..."
                };
                frame.render_widget(Paragraph::new(caption), caption_area);
                graphics.draw(frame, body, image, app.view_generation, current);
            }
            ViewContent::Text(t) => {
                let text = if current { t.as_str() } else { "computing ..." };
                frame.render_widget(
                    Paragraph::new(text).wrap(Wrap { trim: false }),
                    Rect {
                        y: caption_area.y,
                        height: body.height + 1,
                        ..body
                    },
                )
            }
        },
        ViewState::Failed { message, .. } if current => {
            frame.render_widget(
                Paragraph::new(format!("error: {message}"))
                    .style(Style::new().fg(Color::Red))
                    .wrap(Wrap { trim: true }),
                Rect {
                    y: caption_area.y,
                    height: body.height + 1,
                    ..body
                },
            );
        }
        _ if app.prediction.is_none() && app.image_error.is_some() => {
            frame.render_widget(Paragraph::new("no image open"), caption_area)
        }
        _ => frame.render_widget(Paragraph::new("computing ..."), caption_area),
    }
}

fn draw_status(frame: &mut Frame, app: &App, area: Rect, graphics: &Graphics) {
    let [line1, line2] =
        Layout::vertical([Constraint::Length(1), Constraint::Length(1)]).areas(area);
    let first = match &app.prompt {
        Some(p) => {
            let label = match p.kind {
                PromptKind::Search => "search layer: ",
                PromptKind::Class => "class (#rank, index or label; empty = top): ",
                PromptKind::Open => "open image: ",
            };
            Line::from(vec![
                Span::styled(label, Style::new().fg(Color::Yellow)),
                Span::raw(format!("{}█", p.input)),
            ])
        }
        None => {
            let time = match &app.view {
                ViewState::Ready { elapsed, .. } => {
                    format!("{:.0} ms", elapsed.as_secs_f64() * 1e3)
                }
                _ => "-".into(),
            };
            let class = match app.class {
                Some(c) => app.labels[c].clone(),
                None => "top".into(),
            };
            Line::from(format!(
                " {} | {} | {} | last {time} | {} | class {class} | {} | {}",
                app.device,
                app.model_name,
                app.image_path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                app.method.title(),
                app.mode_colormap(),
                graphics.protocol_name(),
            ))
        }
    };
    frame.render_widget(
        Paragraph::new(first).style(Style::new().bg(Color::DarkGray)),
        line1,
    );
    let second = if let Some(notice) = &app.notice {
        format!(" {notice}")
    } else if app.status.is_empty() {
        " ? help  q quit  Tab mode  c class  m method  s save  o open  / search".to_string()
    } else {
        format!(" {}", app.status)
    };
    frame.render_widget(Paragraph::new(second), line2);
}

fn draw_help(frame: &mut Frame, area: Rect) {
    let w = 84.min(area.width);
    let h = (HELP.len() as u16 + 4).min(area.height);
    let r = Rect {
        x: area.x + (area.width - w) / 2,
        y: area.y + (area.height - h) / 2,
        width: w,
        height: h,
    };
    let lines: Vec<Line> = HELP
        .iter()
        .map(|(k, v)| {
            Line::from(vec![
                Span::styled(format!("{k:<14}"), Style::new().fg(Color::Yellow)),
                Span::raw(*v),
            ])
        })
        .collect();
    frame.render_widget(Clear, r);
    frame.render_widget(
        Paragraph::new(lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title(" keys (any key closes) "),
        ),
        r,
    );
}
