"""Word banks and sentence templates for the simulator's text (kept apart from the logic)."""

from __future__ import annotations

SLOTS: dict[str, tuple[str, ...]] = {
    "segment": ("mid-market logistics", "independent clinics", "B2B payments", "e-commerce",
                "developer tooling", "commercial real estate", "industrial IoT", "HR and payroll",
                "insurance claims", "climate reporting", "legal operations", "restaurant supply"),
    "driver": ("rising labour costs", "new compliance rules", "the shift to usage-based pricing",
               "cheaper cloud inference", "pressure to cut manual back-office work",
               "consolidation among incumbents", "buyers' fatigue with point solutions"),
    "expectation": ("answers in minutes instead of days", "pricing that scales with usage",
                    "integrations with the tools they already run", "audit trails by default"),
    "headwind": ("long enterprise sales cycles", "tight IT budgets", "data-privacy reviews",
                 "incumbents bundling a good-enough feature for free", "slow procurement"),
    "buyer": ("operations leads", "finance teams", "mid-sized agencies", "platform engineers",
              "compliance officers", "regional distributors", "product managers"),
    "outcome": ("a weekly decision report", "fewer manual hand-offs", "faster month-end close",
                "a single source of truth", "automated exception handling", "clear forecasts"),
    "setup_time": ("hours", "a single afternoon", "days"),
    "benefit": ("time saved on repetitive work", "fewer errors", "faster onboarding",
                "better visibility for managers", "lower vendor spend"),
    "feature": ("an approvals workflow", "a self-serve analytics layer", "native ERP connectors",
                "role-based access controls", "a mobile companion app", "usage-based billing"),
    "moat": ("proprietary workflow data", "deep integrations", "a network of partner resellers",
             "an opinionated data model", "switching costs once embedded in daily work"),
    "role": ("CEO", "CTO", "head of sales", "head of product", "chief scientist"),
    "background": ("a decade in enterprise sales", "scaling infrastructure at a public company",
                   "running operations for a regional distributor", "a PhD in machine learning",
                   "two prior exits", "experience building the category leader's first data team"),
    "gap": ("a seasoned go-to-market leader", "a finance lead", "enterprise security expertise",
            "a dedicated customer-success function", "regulatory experience"),
    "competitor": ("a well-funded incumbent", "two seed-stage challengers",
                   "spreadsheets and in-house scripts", "the large suites' bundled modules",
                   "offshore service providers"),
    "risk": ("customer concentration", "a long sales cycle", "dependence on a single data partner",
             "pricing pressure", "key-person risk", "regulatory change", "churn among small accounts"),
    "mitigation": ("diversifying the pipeline", "annual contracts with clear ROI reviews",
                   "a second data source", "hiring ahead of demand", "a compliance roadmap"),
    "metric": ("net revenue retention", "gross margin", "payback period", "logo churn",
               "pipeline coverage", "monthly active accounts"),
}

TEMPLATES: dict[str, tuple[str, ...]] = {
    "market": (
        "{name} targets the {segment} market, sized at roughly ${bn} billion and growing about {pct}% a year.",
        "Demand for {kw} is driven by {driver}, and buyers increasingly expect {expectation}.",
        "The serviceable share is narrower: perhaps {small}% of buyers have both budget and urgency this year.",
        "Adoption is strongest among {buyer}, where {kw} is already on the roadmap.",
        "The main tailwind is {driver}; the main headwind is {headwind}.",
    ),
    "product": (
        "{name}'s product turns {kw} into {outcome}, with setup measured in {setup_time}.",
        "The core workflow is simple: {buyer} connect their data, and {name} handles {kw2}.",
        "Early customers cite {benefit} as the main reason they renewed.",
        "The roadmap adds {feature} next, which should lift expansion revenue.",
        "Differentiation rests on {moat}, which is hard to copy quickly.",
    ),
    "team": (
        "{name}'s founding team pairs deep {kw} expertise with experience selling to {buyer}.",
        "The founding {role} brings {background}.",
        "The {role} previously led work on {kw}, which shows in the product's depth.",
        "The team of {num} is lean and ships quickly, releasing updates every {cadence}.",
        "The clearest gap is {gap}; hiring for it should be the next priority.",
        "Founder-market fit is strong: the founders met while working on {kw} for {buyer}.",
        "Equity is split evenly among the founders, and early employees hold a meaningful pool.",
        "Advisors include a former operator from the {segment} space, which helps with {buyer}.",
        "Hiring has been deliberate, with engineering at roughly two thirds of headcount.",
    ),
    "competition": (
        "{name} competes mainly with {competitor} and, in larger accounts, with {competitor2}.",
        "Against {competitor}, {name} wins on {benefit} and loses on brand recognition.",
        "No competitor yet combines {kw} with {feature}, which leaves a window of perhaps {months} months.",
        "The likeliest threat is {competitor} adding {kw} to an existing bundle.",
        "Switching costs favour whoever lands first, which makes speed with {buyer} decisive.",
        "Pricing is below {competitor2} for comparable seats, a gap that may not last.",
    ),
    "risks": (
        "{name} faces a handful of risks, chief among them {risk}.",
        "The largest risk is {risk}, which {name} can reduce by {mitigation}.",
        "A second risk is {risk}; it is manageable but worth tracking through {metric}.",
        "Execution risk is moderate: the plan depends on {kw} landing with {buyer} within {months} months.",
        "Should {headwind} persist, growth could slow to about {small}% a year.",
        "Data handling needs care: buyers in {segment} will ask hard questions about {kw}.",
        "Funding risk is real if the next round slips beyond {months} months of runway.",
    ),
    "traction": (
        "{name} reports {num} paying customers and {metric} of about {pct2}%.",
        "Revenue grew roughly {pct}% over the last two quarters, mostly from {buyer}.",
        "The pipeline is healthy, though much of it sits in the {segment} segment.",
    ),
    "overview": (
        "{name} addresses {kw} for {buyer} in the {segment} market.",
        "The opportunity is credible: {driver} makes the problem more pressing every quarter.",
        "Overall, {name} looks promising, provided it addresses {risk} and builds out {gap}.",
        "The strongest signal so far is {benefit}, reported by early customers.",
        "A sensible next milestone is proving {metric} above {pct2}% across a wider customer base.",
    ),
}
SECTION_WORDS: dict[str, tuple[str, ...]] = {
    "market": ("market", "tam", "demand", "industry"),
    "product": ("product", "technology", "solution", "feature"),
    "team": ("team", "founder", "founders", "hiring"),
    "competition": ("competition", "competitor", "competitors", "competitive", "landscape"),
    "risks": ("risk", "risks", "threat", "threats", "weakness"),
    "traction": ("traction", "revenue", "customers", "growth", "metrics"),
}
JSON_LISTS: dict[str, tuple[str, ...]] = {
    "strengths": ("The section states {kw} clearly and early.",
                  "Claims about {segment} are backed by concrete numbers.",
                  "The argument follows a logical order from problem to {outcome}.",
                  "It names {buyer} as the target reader, which keeps the focus tight."),
    "issues": ("The link between {kw} and {outcome} is asserted rather than shown.",
               "Market figures lack a source or date.",
               "The section does not address {risk}.",
               "Several sentences repeat the same point about {kw2}."),
    "suggestions": ("Add one concrete example of {kw} in practice.",
                    "Cite the source behind the {segment} figures.",
                    "Close with a short paragraph on {risk} and how to reduce it.",
                    "Cut repeated claims and tighten to the key metric, {metric}."),
}
_STOPWORD_TEXT = """
about above after again against their there these those which while would could should
write report section startup company please respond json with from into that this what
your yours have been being will shall analyze analyse analysis following provide given
short brief detailed paragraph paragraphs words using based include includes each other
where when also only more most some such than then them they very just make made
investment investor investors diligence memo summary summarise summarize startups
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
