//! The console labels of the supervisor tools, the escalation queue and the
//! complaint queue (issue 14), in both languages; looked up after
//! [`super::i18n::LABELS`] and checked by the same tests.

/// (key, English, 简体中文).
pub const LABELS: &[(&str, &str, &str)] = &[
    ("nav.escalations", "Escalations", "升级队列"),
    ("nav.complaints", "Complaints", "投诉"),
    (
        "action.cancel",
        "Withdraw on the subscriber's behalf",
        "代用户撤销申请",
    ),
    (
        "action.cancel.help",
        "Supervisors only: withdraws the request, e.g. when the subscriber asked by phone or in a store. Say why; the subscriber sees the reason.",
        "仅限主管：代用户撤销申请（如用户来电或到店要求撤销）。须填写原因，用户可见。",
    ),
    (
        "notice.reassigned",
        "The case was reassigned.",
        "案件已改派。",
    ),
    (
        "notice.claim_broken",
        "The claim was broken; anyone of the department may take the case.",
        "已解除认领，本部门任何人均可接手。",
    ),
    (
        "notice.escalated",
        "The case is in the supervisors' escalation queue.",
        "案件已升级至主管队列。",
    ),
    ("sup.title", "Supervision", "主管操作"),
    ("sup.reassign", "Reassign", "改派"),
    (
        "sup.reassign.help",
        "Hands the case to another agent who may work it now; the current holder's claim ends. Audited with your reason.",
        "将案件交给可处理当前环节的其他坐席，原认领随即失效。操作及原因将记入审计日志。",
    ),
    ("sup.to", "Agent (username)", "坐席（用户名）"),
    (
        "sup.reason",
        "Reason (5–500 characters, audited)",
        "原因（5–500字，记入审计）",
    ),
    ("sup.break", "Break the claim", "解除认领"),
    (
        "sup.break.help",
        "Ends the claim another agent holds, so anyone of the department may take the case.",
        "解除其他坐席的认领，本部门任何人均可接手。",
    ),
    ("sup.escalate", "Escalate to supervisors", "升级至主管"),
    (
        "sup.escalate.help",
        "Puts the case in the supervisors' escalation queue with your reason; it leaves the queue when the case leaves this stage.",
        "将案件连同原因放入主管升级队列；案件离开当前环节后自动移出。",
    ),
    ("esc.title", "Escalation queue", "升级队列"),
    ("esc.cases", "escalated cases", "已升级案件"),
    ("esc.complaints", "overdue complaints", "超期投诉"),
    ("esc.cases_heading", "Escalated cases", "已升级案件"),
    (
        "esc.complaints_heading",
        "Overdue complaints",
        "超期未答复投诉",
    ),
    ("esc.no_cases", "No escalated case.", "暂无升级案件。"),
    (
        "esc.no_complaints",
        "No overdue complaint.",
        "暂无超期投诉。",
    ),
    ("esc.level", "Level", "级别"),
    ("esc.since", "Since", "升级时间"),
    ("esc.why", "Why", "原因"),
    ("esc.sla", "SLA breached", "超出时限"),
    ("complaints.title", "Complaints", "投诉"),
    (
        "complaints.queue",
        "Open complaints, oldest due first",
        "未结投诉（按答复期限排序）",
    ),
    ("complaints.log", "Log a complaint", "登记投诉"),
    (
        "complaints.log_help",
        "A complaint received by hotline, in a store, on social media (e.g. Weibo) or forwarded by 12300. Give the case id or the subscriber's number; a 12300 referral needs its work-order number. The carrier must answer within 15 days.",
        "登记经热线、营业厅、社交媒体（如微博）收到或12300转办的投诉。请填写案件编号或用户号码；12300转办须填写工单号。须在15天内答复。",
    ),
    (
        "complaints.reference",
        "Reference (12300 work-order number, post id, ticket)",
        "编号（12300工单号、帖子编号、工单）",
    ),
    (
        "complaints.case_id",
        "Case id (if known)",
        "案件编号（如有）",
    ),
    ("complaints.msisdn", "Subscriber's number", "用户号码"),
    ("complaints.locale", "Subscriber's language", "用户语言"),
    (
        "complaints.locale_unknown",
        "As the case, else Chinese",
        "同案件，否则中文",
    ),
    ("complaints.text", "The complaint", "投诉内容"),
    ("complaints.log_submit", "Log the complaint", "登记"),
    (
        "complaints.logged",
        "The complaint was logged; its clock runs.",
        "投诉已登记，答复时限开始计算。",
    ),
    (
        "complaints.answered",
        "Answered; the subscriber is told.",
        "已答复，并已通知用户。",
    ),
    ("complaints.logged_by", "logged by", "登记人"),
    ("complaints.no_case", "no case", "无案件"),
    (
        "complaints.answer_label",
        "Answer to the subscriber",
        "答复用户",
    ),
    (
        "complaints.answer_submit",
        "Answer and tell the subscriber",
        "答复并通知用户",
    ),
    ("complaints.answer_it", "Answer", "去答复"),
    ("complaint.channel.hotline", "Hotline", "热线"),
    ("complaint.channel.store", "Store", "营业厅"),
    ("complaint.channel.social", "Social media", "社交媒体"),
    ("complaint.channel.regulator", "12300 referral", "12300转办"),
    ("complaint.channel.web", "Web", "网页"),
    ("complaint.channel.app", "App", "App"),
];
