//! The console's two languages (zh-CN and en): how a request picks one (`?lang=` →
//! cookie → `Accept-Language`), and every label in both. A unit test checks that
//! each key the templates use, and each state, event, role and code, has both.

use axum::http::{HeaderMap, header};

/// The cookie remembering the chosen language.
pub const LANG_COOKIE: &str = "reactivation_lang";

/// A console language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// Simplified Chinese.
    ZhCn,
    /// English.
    En,
}

impl Lang {
    /// Both, in the order the switcher shows them.
    pub const ALL: [Lang; 2] = [Lang::ZhCn, Lang::En];

    /// The BCP 47 tag.
    pub fn tag(self) -> &'static str {
        match self {
            Self::ZhCn => "zh-CN",
            Self::En => "en",
        }
    }

    /// The language's own name.
    pub fn name(self) -> &'static str {
        match self {
            Self::ZhCn => "中文",
            Self::En => "English",
        }
    }

    /// Parses a tag loosely (`zh`, `zh-CN`, `zh-Hans`, `en`, `en-US`…).
    pub fn parse(tag: &str) -> Option<Self> {
        let tag = tag.trim().to_ascii_lowercase();
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        match primary {
            "zh" => Some(Self::ZhCn),
            "en" => Some(Self::En),
            _ => None,
        }
    }

    /// The language of a request: `?lang=`, then the cookie, then the best
    /// `Accept-Language` match, else Chinese (the carrier's language).
    pub fn choose(query_lang: Option<&str>, headers: &HeaderMap) -> Self {
        query_lang
            .and_then(Self::parse)
            .or_else(|| super::cookie(headers, LANG_COOKIE).and_then(|v| Self::parse(&v)))
            .or_else(|| {
                headers
                    .get(header::ACCEPT_LANGUAGE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(Self::from_accept_language)
            })
            .unwrap_or(Self::ZhCn)
    }

    /// The best of our languages in an `Accept-Language` value (by q-value, then order).
    pub fn from_accept_language(value: &str) -> Option<Self> {
        let mut best: Option<(f32, Self)> = None;
        for part in value.split(',') {
            let mut pieces = part.split(';');
            let Some(lang) = pieces.next().and_then(Self::parse) else {
                continue;
            };
            let q = pieces
                .find_map(|p| p.trim().strip_prefix("q="))
                .and_then(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
                best = Some((q, lang));
            }
        }
        best.map(|(_, l)| l)
    }
}

/// Labels in the request's language.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ui {
    /// The language.
    pub lang: Lang,
}

impl Ui {
    /// The language tag (for `<html lang>`).
    pub fn tag(&self) -> &'static str {
        self.lang.tag()
    }

    /// The label for `key`; a missing key shows as itself (a test keeps that from happening).
    pub fn t(&self, key: &str) -> String {
        self.get(key).map_or_else(|| key.to_owned(), str::to_owned)
    }

    /// The label for `key`, if there is one.
    pub fn get(&self, key: &str) -> Option<&'static str> {
        all_labels()
            .find(|(k, _, _)| *k == key)
            .map(|(_, en, zh)| match self.lang {
                Lang::En => *en,
                Lang::ZhCn => *zh,
            })
    }

    /// A label from a prefix and a code (`state.` + `security_review`), or the code itself.
    pub fn code(&self, prefix: &str, code: &str) -> String {
        self.get(&format!("{prefix}.{code}"))
            .map_or_else(|| code.to_owned(), str::to_owned)
    }

    /// A duration such as `2d 3h`, `3h 12m`, `5m` (`2天3小时`…).
    pub fn duration(&self, secs: i64) -> String {
        let secs = secs.max(0);
        let (d, h, m) = (secs / 86_400, (secs % 86_400) / 3600, (secs % 3600) / 60);
        let unit = |n: i64, key: &str| format!("{n}{}", self.t(key));
        let parts: Vec<String> = if d > 0 {
            vec![unit(d, "time.d"), unit(h, "time.h")]
        } else if h > 0 {
            vec![unit(h, "time.h"), unit(m, "time.m")]
        } else if m > 0 {
            vec![unit(m, "time.m")]
        } else {
            vec![unit(secs, "time.s")]
        };
        parts.join(if self.lang == Lang::En { " " } else { "" })
    }

    /// "3h 12m left" / "overdue by 5m" for a due time `secs_left` from now.
    pub fn countdown(&self, secs_left: i64) -> String {
        if secs_left >= 0 {
            self.t("time.left").replace("{}", &self.duration(secs_left))
        } else {
            self.t("time.overdue")
                .replace("{}", &self.duration(-secs_left))
        }
    }
}

/// Every label table of the console: this file's and those kept beside their pages.
pub fn all_labels() -> impl Iterator<Item = &'static (&'static str, &'static str, &'static str)> {
    LABELS
        .iter()
        .chain(super::assisted::LABELS)
        .chain(super::store_visit::LABELS)
        .chain(super::accounts::LABELS)
        .chain(super::reports::LABELS)
        .chain(super::i18n_supervision::LABELS)
}

/// (key, English, 简体中文).
pub const LABELS: &[(&str, &str, &str)] = &[
    ("app.name", "Reactivation console", "复机工作台"),
    ("nav.skip", "Skip to content", "跳到正文"),
    ("nav.main", "Main navigation", "主导航"),
    ("nav.language", "Language", "语言"),
    ("nav.signed_in_as", "Signed in as", "当前登录"),
    ("nav.logout", "Log out", "退出登录"),
    ("nav.dashboard", "Dashboard", "主管看板"),
    ("nav.queue.cs", "CS queue", "客服队列"),
    ("nav.queue.security", "Security queue", "安全队列"),
    ("nav.queue.technical", "Technical queue", "技术队列"),
    // Login.
    ("login.title", "Agent login", "坐席登录"),
    (
        "login.intro",
        "Sign in with your agent account.",
        "请使用坐席账号登录。",
    ),
    (
        "login.failed",
        "Login failed. Check your username and password; after repeated failures the account is locked for a while.",
        "登录失败。请检查用户名和密码；多次失败后账号将被暂时锁定。",
    ),
    ("login.username", "Username", "用户名"),
    ("login.password", "Password", "密码"),
    ("login.submit", "Log in", "登录"),
    // Queues.
    ("queue.heading.cs", "Customer service queue", "客服队列"),
    (
        "queue.heading.security",
        "Security review queue",
        "安全审核队列",
    ),
    ("queue.heading.technical", "Technical queue", "技术队列"),
    ("queue.cases", "cases", "个案件"),
    ("queue.breached", "past SLA", "已超时"),
    (
        "queue.with_complaint",
        "with an open complaint",
        "有未结投诉",
    ),
    (
        "queue.empty",
        "No cases are waiting in this queue.",
        "此队列中暂无待处理案件。",
    ),
    (
        "queue.caption",
        "cases, earliest SLA due first",
        "案件，按时限到期先后排列",
    ),
    ("queue.col.case", "Case", "案件"),
    ("queue.col.number", "Number", "号码"),
    ("queue.col.state", "State", "状态"),
    ("queue.col.risk", "Risk", "风险"),
    ("queue.col.due", "SLA due", "时限"),
    ("queue.col.holder", "Held by", "处理人"),
    ("queue.col.actions", "Actions", "操作"),
    ("queue.you", "you", "本人"),
    ("queue.unclaimed", "Nobody", "未认领"),
    ("queue.open", "Open", "打开"),
    (
        "queue.order_note",
        "Cases with an open complaint come first, then by SLA due time; the page updates by itself",
        "有未结投诉的案件优先，其余按时限排序；页面自动更新",
    ),
    ("badge.complaint", "Complaint", "投诉"),
    ("badge.escalated", "Escalated", "已升级"),
    ("badge.appeal", "Appeal", "申诉"),
    ("badge.breached", "SLA breached", "已超时"),
    ("common.rendered_at", "as of", "更新于"),
    // Actions.
    ("action.claim", "Claim", "认领"),
    ("action.release", "Release", "释放"),
    ("action.verify_identity", "Confirm identity", "确认身份"),
    (
        "action.verify_identity.help",
        "The subscriber's identity is confirmed; the case goes on to risk assessment.",
        "确认用户身份，案件进入风险评估。",
    ),
    ("action.request_info", "Request information", "要求补充材料"),
    (
        "action.request_info.help",
        "Ask the subscriber for more; the SLA clock stops until they answer. The reason is shown to them.",
        "请用户补充信息；用户答复前时限暂停。原因将展示给用户。",
    ),
    (
        "action.approve",
        "Approve (full service)",
        "批准（全部恢复）",
    ),
    (
        "action.approve.help",
        "Restore full service: the carrier is sent a provisioning order.",
        "恢复全部服务：向运营商网络下发开通工单。",
    ),
    (
        "action.approve_partly",
        "Approve inbound only",
        "批准（仅恢复呼入）",
    ),
    (
        "action.approve_partly.help",
        "Restore inbound service only; security decides on full service later.",
        "仅恢复呼入服务，之后由安全部门决定是否全部恢复。",
    ),
    ("action.reject", "Reject", "拒绝"),
    (
        "action.reject.help",
        "Refuse with a reason code; the subscriber is told the reason and may appeal once within 15 days.",
        "选择拒绝原因码；用户会收到原因，可在15天内申诉一次。",
    ),
    (
        "action.retry_provisioning",
        "Retry provisioning",
        "重新下发工单",
    ),
    (
        "action.retry_provisioning.help",
        "Send the provisioning order to the carrier again.",
        "重新向运营商网络下发开通工单。",
    ),
    ("action.resolve_manually", "Resolved manually", "已人工处理"),
    (
        "action.resolve_manually.help",
        "The number was restored by hand at the carrier; close the case as reactivated.",
        "号码已在运营商侧人工恢复，案件以复机成功结案。",
    ),
    ("action.close", "Close", "结案"),
    (
        "action.close.help",
        "Keep the partial restoration as final and close the case.",
        "保留部分恢复结果并结案。",
    ),
    // Case page.
    ("case.title", "Case", "案件"),
    ("case.department", "Department", "所属部门"),
    ("case.version", "version", "版本"),
    ("case.sla_due", "SLA", "时限"),
    ("case.work", "Work on this case", "处理"),
    ("case.held_by", "Held by", "处理人"),
    ("case.until", "until", "至"),
    (
        "case.no_actions",
        "Your role has no action on this case in its current state.",
        "您的角色在此状态下无可执行操作。",
    ),
    ("case.reason_code", "Reason code", "拒绝原因码"),
    ("case.choose", "Choose…", "请选择…"),
    ("case.reason_required", "Reason (required)", "原因（必填）"),
    ("case.reason_optional", "Reason (optional)", "原因（选填）"),
    ("case.risk", "Risk", "风险评估"),
    ("case.needs", "Still needed", "尚需"),
    ("case.assessed_at", "Assessed", "评估时间"),
    ("case.explanations", "Subscriber's explanations", "用户说明"),
    (
        "case.no_explanations",
        "The subscriber has not explained anything yet.",
        "用户尚未提交说明。",
    ),
    ("case.counterparty", "Counterparty", "联系人号码"),
    ("case.relation", "Relation", "关系"),
    ("case.purpose", "Purpose", "联系原因"),
    ("case.evidence", "Evidence", "证明材料"),
    (
        "case.no_evidence",
        "No documents were uploaded.",
        "用户未上传材料。",
    ),
    ("case.evidence_pdf", "PDF document", "PDF 文件"),
    ("case.evidence_image", "Uploaded image", "上传的图片"),
    ("case.open_file", "open", "打开"),
    ("case.timeline", "Timeline", "处理记录"),
    ("case.by", "by", "操作人："),
    ("case.subscriber", "Subscriber", "用户信息"),
    ("case.number", "Number", "号码"),
    ("case.name", "Name", "姓名"),
    ("case.id_number", "ID number", "身份证号"),
    ("case.channel", "Channel", "渠道"),
    ("case.locale", "Language", "语言"),
    ("case.opened", "Opened", "提交时间"),
    ("case.proofs", "Identity proofs", "身份核验"),
    ("case.complaints", "Complaints", "投诉"),
    ("case.orders", "Provisioning orders", "开通工单"),
    ("case.notes", "Internal notes", "内部备注"),
    ("case.no_notes", "No notes yet.", "暂无备注。"),
    ("case.back_queue", "Back to the queue", "返回队列"),
    ("case.back_dashboard", "Back to the dashboard", "返回看板"),
    (
        "notice.claim",
        "You hold this case now.",
        "您已认领此案件。",
    ),
    (
        "notice.release",
        "You released the case.",
        "您已释放此案件。",
    ),
    ("notice.note", "Note added.", "备注已添加。"),
    ("notice.decided", "Decision recorded.", "处理结果已记录。"),
    ("proofs.status", "Status", "状态"),
    ("proofs.not_verified", "Not verified", "未核验"),
    ("proofs.verified_at", "Verified", "核验时间"),
    ("proofs.otp_sends", "Codes sent", "已发验证码"),
    ("proofs.failed", "Failed attempts", "失败次数"),
    (
        "proofs.name_id",
        "Name and ID vs carrier record",
        "姓名与证件号（运营商登记）",
    ),
    ("proofs.tried", "Proofs tried", "已尝试的核验"),
    (
        "proofs.none_tried",
        "No proof offered yet.",
        "尚未提交核验。",
    ),
    ("proofs.method", "Method", "方式"),
    ("proofs.outcome", "Outcome", "结果"),
    ("proofs.at", "When", "时间"),
    ("name_id.matched", "Matched", "一致"),
    ("name_id.did_not_match", "Did not match", "不一致"),
    ("name_id.not_yet_asked", "Not yet asked", "尚未查询"),
    ("proof_outcome.pending", "being judged", "核验中"),
    ("proof_outcome.failed", "failed", "未通过"),
    ("proof_outcome.accepted", "accepted", "通过"),
    ("proof_outcome.released", "not judged", "未判定"),
    (
        "case.identity_check",
        "How identity was checked (required)",
        "核验方式（必填）",
    ),
    (
        "case.supervisor_needed",
        "The name and ID on this case did not match the carrier's record: only a supervisor may confirm identity.",
        "本案姓名与证件号与运营商登记不一致：仅主管可确认身份。",
    ),
    (
        "identity_check.original_id_in_person",
        "Original ID seen in person",
        "现场查验身份证原件",
    ),
    (
        "identity_check.callback_to_contact_on_file",
        "Called back a contact on file",
        "回拨预留联系方式",
    ),
    (
        "identity_check.video_call_face_match",
        "Video call, face matched the ID",
        "视频通话人像比对",
    ),
    (
        "identity_check.documents_reviewed",
        "Documents reviewed",
        "审核证明材料",
    ),
    ("method.otp", "one-time code", "短信验证码"),
    ("method.service_password", "service password", "服务密码"),
    ("method.call_records", "call records", "通话记录"),
    ("method.agent", "confirmed by an agent", "坐席确认"),
    (
        "signal.fraud_linked_contacts",
        "Fraud-linked contacts",
        "涉诈联系人",
    ),
    (
        "signal.sms_peak_per_hour",
        "Peak SMS per hour",
        "每小时短信峰值",
    ),
    (
        "signal.intl_calls_24h",
        "International calls (24 h)",
        "24小时国际通话",
    ),
    ("signal.suspension_reason", "Suspension reason", "停机原因"),
    (
        "signal.flagged_contacts",
        "Flagged contacts",
        "被标记联系人",
    ),
    ("complaint.due", "Answer due", "答复期限"),
    ("complaint.answer", "Answer", "答复"),
    ("complaint.channel", "Channel", "渠道"),
    ("complaint.status.open", "Open", "未结"),
    ("complaint.status.answered", "Answered", "已答复"),
    ("orders.failures", "failures", "失败次数"),
    ("restoration.full", "full service", "全部恢复"),
    ("restoration.inbound_only", "inbound only", "仅呼入"),
    (
        "notes.add",
        "Add a note (never shown to the subscriber)",
        "添加备注（不会展示给用户）",
    ),
    ("notes.submit", "Add note", "添加备注"),
    ("unmask.title", "Show personal data", "查看完整个人信息"),
    (
        "unmask.reason",
        "Why do you need it? (5 to 500 characters)",
        "查看原因（5至500字）",
    ),
    (
        "unmask.audited",
        "Your name and reason are recorded in the audit log.",
        "您的姓名与原因将记入审计日志。",
    ),
    ("unmask.submit", "Show once", "查看一次"),
    ("unmask.shown", "Personal data in clear", "完整个人信息"),
    (
        "unmask.shown_once",
        "Shown once for this request, and audited. Do not copy it elsewhere.",
        "仅本次显示，且已记录审计。请勿另行复制保存。",
    ),
    ("unmask.hide", "Hide", "隐藏"),
    // Dashboard.
    ("dash.title", "Supervisor dashboard", "主管看板"),
    ("dash.no_data", "No data yet.", "暂无数据。"),
    ("dash.open_cases", "open cases", "个未结案件"),
    ("dash.sla_breaches", "SLA breaches", "超时案件"),
    ("dash.moves_24h", "stage moves in 24 h", "24小时内流转"),
    ("dash.open_complaints", "open complaints", "未结投诉"),
    ("dash.load", "Queue depth per stage", "各环节积压"),
    ("dash.stage", "Stage", "环节"),
    ("dash.open", "Open", "数量"),
    ("dash.oldest", "Oldest since", "最早进入"),
    ("dash.breached", "Past SLA", "超时"),
    ("dash.no_open", "No open cases.", "没有未结案件。"),
    (
        "dash.no_breaches",
        "No open case is past its SLA.",
        "没有超时的未结案件。",
    ),
    (
        "dash.throughput",
        "Throughput in the last 24 hours",
        "近24小时处理量",
    ),
    ("dash.left", "Cases done", "完成数"),
    ("dash.median", "Median time in stage", "环节用时中位数"),
    (
        "dash.false_positives",
        "False positives per reason code",
        "各原因码误报率",
    ),
    ("dash.reason_code", "Reason code", "原因码"),
    ("dash.flagged", "Flagged", "标记数"),
    ("dash.approved", "Approved after review", "复核后批准"),
    ("dash.fp_rate", "False-positive rate", "误报率"),
    ("dash.rule_version", "Rule version", "规则版本"),
    (
        "dash.complaints_by_due",
        "Open complaints by due date",
        "未结投诉（按期限）",
    ),
    (
        "dash.no_complaints",
        "No open complaints.",
        "没有未结投诉。",
    ),
    ("dash.dead_letters", "Dead letters", "死信"),
    ("dash.dead.queue", "Queue", "队列"),
    ("dash.dead.count", "Items given up", "已放弃的条目"),
    (
        "dash.dead.hint",
        "Items given up after their last attempt. Admins list and retry them with GET /v1/agent/admin/dead-letters and POST /v1/agent/admin/dead-letters/{queue}/{id}/retry.",
        "最后一次尝试后被放弃的条目。管理员可通过 GET /v1/agent/admin/dead-letters 查看，并通过 POST /v1/agent/admin/dead-letters/{queue}/{id}/retry 重试。",
    ),
    (
        "dash.window_note",
        "Throughput and times count the stage moves of the last 24 hours",
        "处理量与用时统计近24小时的环节流转",
    ),
    (
        "dash.chart.load",
        "Open cases per stage",
        "各环节未结案件数",
    ),
    (
        "dash.chart.breaches",
        "Cases past their SLA per stage",
        "各环节超时案件数",
    ),
    (
        "dash.chart.left",
        "Cases done per stage (24 h)",
        "各环节完成数（24小时）",
    ),
    (
        "dash.chart.median",
        "Median time in stage (24 h)",
        "环节用时中位数（24小时）",
    ),
    (
        "dash.chart.fp",
        "False-positive rate per reason code",
        "各原因码误报率",
    ),
    (
        "dash.chart.desc",
        "Horizontal bar chart; the same figures are in the table below.",
        "横向条形图；具体数值见下表。",
    ),
    // Errors.
    ("error.back", "Back", "返回"),
    ("error.heading", "Not done", "操作未完成"),
    (
        "error.forbidden",
        "Your role may not do this.",
        "您的角色无权执行此操作。",
    ),
    (
        "error.not_found",
        "There is no such case or page.",
        "没有该案件或页面。",
    ),
    (
        "error.conflict",
        "The case changed meanwhile, or someone else holds it. Reload it and try again.",
        "案件已被更新或正由他人处理，请刷新后重试。",
    ),
    (
        "error.invalid",
        "Some fields are missing or invalid.",
        "部分内容缺失或不正确。",
    ),
    (
        "error.csrf",
        "This form has expired or did not come from this console. Reload the page and try again.",
        "表单已过期或来源无效，请刷新页面后重试。",
    ),
    (
        "error.internal",
        "Something went wrong on our side. Please try again shortly.",
        "系统出现问题，请稍后重试。",
    ),
    (
        "error.unavailable",
        "A service is unavailable right now. Please try again shortly.",
        "服务暂不可用，请稍后重试。",
    ),
    // Time.
    ("time.d", "d", "天"),
    ("time.h", "h", "小时"),
    ("time.m", "m", "分"),
    ("time.s", "s", "秒"),
    ("time.left", "{} left", "剩余{}"),
    ("time.overdue", "overdue by {}", "已超时{}"),
    // Departments and roles.
    ("dept.customer_service", "Customer service", "客服"),
    ("dept.security", "Security", "安全"),
    ("dept.technical", "Technical", "技术"),
    ("dept.subscriber", "Waiting for the subscriber", "等待用户"),
    ("role.customer", "subscriber", "用户"),
    ("role.cs", "customer service", "客服"),
    ("role.store", "store agent", "营业厅人员"),
    ("role.security", "security analyst", "安全分析员"),
    ("role.technical", "technical staff", "技术人员"),
    ("role.supervisor", "supervisor", "主管"),
    ("role.admin", "administrator", "管理员"),
    ("role.system", "system", "系统"),
    // States.
    (
        "state.awaiting_identity",
        "Awaiting identity proof",
        "待身份核验",
    ),
    ("state.identity_review", "Identity review", "人工身份审核"),
    (
        "state.awaiting_customer_identity",
        "Waiting for the subscriber (identity)",
        "等待用户补充（身份）",
    ),
    ("state.risk_assessment", "Risk assessment", "风险评估中"),
    ("state.security_review", "Security review", "安全审核"),
    (
        "state.awaiting_customer_security",
        "Waiting for the subscriber (security)",
        "等待用户补充（安全）",
    ),
    ("state.provisioning", "Provisioning", "开通中"),
    (
        "state.provisioning_failed",
        "Provisioning failed",
        "开通失败",
    ),
    (
        "state.partially_reactivated",
        "Partly reactivated",
        "部分复机",
    ),
    ("state.rejected", "Rejected", "已拒绝"),
    (
        "state.awaiting_store_visit",
        "Awaiting store visit",
        "等待营业厅办理",
    ),
    ("state.reactivated", "Reactivated", "已复机"),
    ("state.cancelled", "Cancelled", "已撤销"),
    ("state.expired", "Expired", "已过期"),
    ("state.closed", "Closed", "已结案"),
    // Events.
    ("event.opened", "Opened", "提交申请"),
    ("event.proofs_accepted", "Proofs accepted", "身份核验通过"),
    (
        "event.identity_escalated",
        "Identity escalated",
        "转人工身份审核",
    ),
    (
        "event.identity_verified",
        "Identity confirmed",
        "人工确认身份",
    ),
    (
        "event.info_requested",
        "Information requested",
        "要求补充材料",
    ),
    (
        "event.customer_responded",
        "Subscriber answered",
        "用户已答复",
    ),
    ("event.risk_cleared", "Risk cleared", "风险评估通过"),
    ("event.risk_flagged", "Risk flagged", "风险标记"),
    ("event.risk_refused", "Refused on risk", "风险拒绝"),
    (
        "event.store_visit_required",
        "Store visit required",
        "需营业厅办理",
    ),
    (
        "event.store_visit_verified",
        "Verified in person at a store",
        "营业厅现场核验通过",
    ),
    ("event.approved", "Approved", "已批准"),
    (
        "event.partly_approved",
        "Approved inbound only",
        "批准仅呼入",
    ),
    ("event.rejected", "Rejected", "已拒绝"),
    ("event.appealed", "Appealed", "用户申诉"),
    ("event.restored", "Restored", "已恢复"),
    ("event.partly_restored", "Partly restored", "部分恢复"),
    (
        "event.provisioning_failed",
        "Provisioning failed",
        "开通失败",
    ),
    (
        "event.provisioning_retried",
        "Provisioning retried",
        "重新下发工单",
    ),
    (
        "event.resolved_manually",
        "Resolved manually",
        "人工处理完成",
    ),
    (
        "event.superseded",
        "Superseded by a proven request",
        "已被另一份通过验证的申请取代",
    ),
    ("event.cancelled", "Cancelled", "已撤销"),
    ("event.expired", "Expired", "已过期"),
    ("event.closed", "Closed", "已结案"),
    // Risk.
    ("tier.low", "Low", "低"),
    ("tier.medium", "Medium", "中"),
    ("tier.high", "High", "高"),
    ("tier.extreme", "Extreme", "极高"),
    ("need.identity_proof", "identity proof", "身份核验"),
    ("need.explanation", "explanation", "情况说明"),
    ("need.evidence", "documents", "证明材料"),
    ("need.security_review", "security review", "安全审核"),
    ("need.store_visit", "store visit", "营业厅办理"),
    ("need.information", "information requested", "补充信息"),
    (
        "reason.fraud_linked_contacts",
        "fraud-linked contacts",
        "涉诈联系人",
    ),
    ("reason.bulk_sms", "SMS bursts", "短信群发"),
    (
        "reason.international_calls",
        "international calls",
        "国际通话",
    ),
    ("reason.confirmed_fraud", "confirmed fraud", "确认涉诈"),
    (
        "reject.insufficient_explanation",
        "Insufficient explanation",
        "说明不充分",
    ),
    (
        "reject.evidence_not_verifiable",
        "Evidence not verifiable",
        "材料无法核实",
    ),
    (
        "reject.identity_not_confirmed",
        "Identity not confirmed",
        "身份无法确认",
    ),
    ("reject.fraud_confirmed", "Fraud confirmed", "确认涉诈"),
    // Per-department progress and expedited handling.
    ("case.departments", "Departments on the way", "经手部门"),
    ("route.done", "done", "已完成"),
    ("route.current", "now", "当前"),
    ("route.ahead", "ahead", "待办"),
    ("route.typical", "Typical time", "通常用时"),
    ("route.source.live", "recent cases", "近期实际"),
    ("route.source.sla", "SLA", "时限标准"),
    (
        "case.expedite",
        "Expedited handling requested",
        "用户申请加急处理",
    ),
    ("badge.expedited", "Expedited", "加急"),
];

#[cfg(test)]
mod tests {
    use case_domain::{
        CaseEvent, CaseState, Department, Role,
        decision::RejectionCode,
        risk::{Need, ReasonCode, RiskTier},
    };

    use super::*;

    const TEMPLATES: &[(&str, &str)] = &[
        ("base", include_str!("../../templates/console/base.html")),
        ("login", include_str!("../../templates/console/login.html")),
        ("queue", include_str!("../../templates/console/queue.html")),
        ("case", include_str!("../../templates/console/case.html")),
        (
            "dashboard",
            include_str!("../../templates/console/dashboard.html"),
        ),
        ("error", include_str!("../../templates/console/error.html")),
        (
            "numbers",
            include_str!("../../templates/console/numbers.html"),
        ),
        (
            "assisted",
            include_str!("../../templates/console/assisted.html"),
        ),
        (
            "store_visits",
            include_str!("../../templates/console/store_visits.html"),
        ),
        (
            "accounts",
            include_str!("../../templates/console/accounts.html"),
        ),
        (
            "escalations",
            include_str!("../../templates/console/escalations.html"),
        ),
        (
            "complaints",
            include_str!("../../templates/console/complaints.html"),
        ),
        (
            "case_supervision",
            include_str!("../../templates/console/case_supervision.html"),
        ),
        (
            "reports",
            include_str!("../../templates/console/reports.html"),
        ),
    ];

    fn has(key: &str) -> bool {
        all_labels().any(|(k, en, zh)| *k == key && !en.is_empty() && !zh.is_empty())
    }

    #[test]
    fn keys_are_unique_and_both_languages_are_filled() {
        let mut seen = std::collections::HashSet::new();
        for (key, en, zh) in all_labels() {
            assert!(seen.insert(*key), "duplicate label key {key}");
            assert!(!en.trim().is_empty() && !zh.trim().is_empty(), "{key}");
            assert_eq!(
                en.contains("{}"),
                zh.contains("{}"),
                "{key}: placeholder in one language only"
            );
        }
    }

    #[test]
    fn every_key_the_templates_use_exists() {
        for (name, source) in TEMPLATES {
            let mut rest = *source;
            while let Some(at) = rest.find(".t(\"") {
                rest = &rest[at + 4..];
                let end = rest.find('"').expect("closing quote");
                let key = &rest[..end];
                assert!(has(key), "template {name} uses missing label {key}");
                rest = &rest[end..];
            }
        }
    }

    #[test]
    fn every_code_shown_has_a_label() {
        for s in CaseState::ALL {
            assert!(has(&format!("state.{s}")), "state {s}");
        }
        for e in CaseEvent::ALL {
            assert!(has(&format!("event.{e}")), "event {e}");
        }
        for (action, _) in CaseEvent::AGENT_ACTIONS {
            assert!(has(&format!("action.{action}")), "action {action}");
            assert!(has(&format!("action.{action}.help")), "help {action}");
        }
        for r in Role::ALL {
            assert!(has(&format!("role.{}", r.as_str())), "role {r:?}");
        }
        for d in [
            Department::CustomerService,
            Department::Security,
            Department::Technical,
            Department::Subscriber,
        ] {
            assert!(has(&format!("dept.{}", d.as_str())), "{d:?}");
        }
        for t in [
            RiskTier::Low,
            RiskTier::Medium,
            RiskTier::High,
            RiskTier::Extreme,
        ] {
            assert!(has(&format!("tier.{}", t.as_str())));
        }
        for n in Need::ALL {
            assert!(has(&format!("need.{}", n.as_str())));
        }
        for r in ReasonCode::ALL {
            assert!(has(&format!("reason.{}", r.as_str())));
        }
        for c in RejectionCode::ALL {
            assert!(has(&format!("reject.{}", c.as_str())));
        }
        for c in case_domain::agent_policy::IdentityCheck::ALL {
            assert!(has(&format!("identity_check.{}", c.as_str())));
        }
        for m in ["matched", "did_not_match", "not_yet_asked"] {
            assert!(has(&format!("name_id.{m}")));
        }
        for o in ["pending", "failed", "accepted", "released"] {
            assert!(has(&format!("proof_outcome.{o}")));
        }
        for c in case_domain::Channel::ALL {
            assert!(has(&format!("channel.{c}")), "channel {c}");
        }
        for c in case_domain::assisted::AssistedCheck::ALL {
            assert!(has(&format!("assisted_check.{}", c.as_str())));
        }
    }

    #[test]
    fn the_language_comes_from_query_then_cookie_then_accept_language() {
        let mut headers = HeaderMap::new();
        assert_eq!(Lang::choose(None, &headers), Lang::ZhCn);
        headers.insert(
            header::ACCEPT_LANGUAGE,
            "fr-FR, en-US;q=0.8, zh-CN;q=0.5".parse().unwrap(),
        );
        assert_eq!(Lang::choose(None, &headers), Lang::En);
        headers.insert(
            header::COOKIE,
            "a=b; reactivation_lang=zh-CN".parse().unwrap(),
        );
        assert_eq!(Lang::choose(None, &headers), Lang::ZhCn);
        assert_eq!(Lang::choose(Some("en"), &headers), Lang::En);
        assert_eq!(Lang::choose(Some("xx"), &headers), Lang::ZhCn);
        assert_eq!(Lang::from_accept_language("zh;q=0.9, en"), Some(Lang::En));
        assert_eq!(Lang::from_accept_language("zh-Hans-CN"), Some(Lang::ZhCn));
        assert_eq!(Lang::from_accept_language("en;q=0, de"), None);
        assert_eq!(Lang::from_accept_language(""), None);
    }

    #[test]
    fn durations_and_countdowns_read_naturally() {
        let en = Ui { lang: Lang::En };
        let zh = Ui { lang: Lang::ZhCn };
        assert_eq!(en.duration(2 * 86_400 + 3 * 3600 + 59), "2d 3h");
        assert_eq!(en.duration(3 * 3600 + 12 * 60), "3h 12m");
        assert_eq!(en.duration(300), "5m");
        assert_eq!(en.duration(42), "42s");
        assert_eq!(zh.duration(3 * 3600 + 12 * 60), "3小时12分");
        assert_eq!(en.countdown(3600), "1h 0m left");
        assert_eq!(en.countdown(-300), "overdue by 5m");
        assert_eq!(zh.countdown(-300), "已超时5分");
        assert_eq!(en.code("state", "security_review"), "Security review");
        assert_eq!(en.code("state", "unknown_thing"), "unknown_thing");
    }
}
