"""Imports and reports pages: roles, CSRF, the validation report on screen, templates, report download."""

from __future__ import annotations

import io

import pytest
from openpyxl import load_workbook

from analytics.center.accounts import audit_entries
from analytics.web.context import get_db

GOOD_SURVEY = ("日期,手机号,县区,乡镇(街道),评价\n"
               "2026-07-15,13800001234,牡丹区,东城街道,满意\n"
               "2026-07-16,13800001235,曹县,,不满意\n")
BAD_SURVEY = ("日期,手机号,县区,乡镇(街道),评价\n"
              "2026-07-15,13800001234,牡丹区,东城街道,满意\n"
              "2026-07-15,13800001236,<b>火星区</b>,某镇,满意\n"
              "2026-13-45,13800001237,曹县,,满意\n"
              "2026-07-18,13800001238,曹县,,非常好极了\n")


def upload(auth, kind, content: bytes, filename: str, quarter="2026Q3", **extra):
    return auth.post(f"/imports/{kind}", {"quarter": quarter, "file": (io.BytesIO(content), filename), **extra},
                     content_type="multipart/form-data")


@pytest.mark.parametrize("user, allowed", [("admin", True), ("assessor", True), ("city", False),
                                           ("county", False), ("county2", False)])
def test_import_pages_by_role(client, auth, user, allowed):
    auth.login(user)
    assert client.get("/imports").status_code == (200 if allowed else 403)
    assert client.get("/imports/template/survey.xlsx").status_code == (200 if allowed else 403)
    assert client.get("/api/v1/imports").status_code == (200 if allowed else 403)
    assert upload(auth, "survey", GOOD_SURVEY.encode(), "s.csv").status_code == (200 if allowed else 403)
    report_allowed = user in ("admin", "assessor", "city")
    assert client.get("/reports?quarter=2026Q3&format=csv").status_code == (200 if report_allowed else 403)


def test_anonymous(client):
    assert client.get("/imports").status_code == 302
    assert client.get("/api/v1/imports").status_code == 401
    assert client.get("/reports").status_code == 302


def test_good_survey_import_is_reported_and_audited(client, auth):
    auth.login("assessor")
    r = upload(auth, "survey", GOOD_SURVEY.encode("utf-8"), "回访.csv")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and 'id="import-report"' in html
    assert "读取 2 行，导入 2 行" in html and "拒收 0 行" in html
    assert "回访.csv" in client.get("/imports").get_data(as_text=True)
    entry = audit_entries(get_db(client.application), action="import.survey")[0]
    assert entry["detail"]["imported"] == 2 and entry["username"] == "assessor"


def test_broken_survey_shows_the_validation_report(client, auth):
    auth.login("admin")
    r = upload(auth, "survey", BAD_SURVEY.encode("gbk"), "bad.csv")
    html = r.get_data(as_text=True)
    assert r.status_code == 422   # all-or-nothing: rows rejected, nothing imported
    assert 'id="nothing-imported"' in html and "未导入任何数据" in html and "仅导入有效行，跳过错误行" in html
    assert "拒收 3 行" in html and 'id="rejected"' in html and "有效 1 行" in html
    assert "&lt;b&gt;火星区&lt;/b&gt;" in html and "<b>火星区</b>" not in html
    assert "2026-13-45" in html and "非常好极了" in html
    assert get_db(client.application).query("SELECT COUNT(*) FROM survey_answers")[0][0] == 0
    assert client.get("/api/v1/imports").get_json()["imports"] == []
    assert audit_entries(get_db(client.application), action="import.survey")[0]["action"] == "import.survey.rejected"
    # the box 「仅导入有效行，跳过错误行」 ticked: the valid row is imported, the same rows listed
    r = upload(auth, "survey", BAD_SURVEY.encode("gbk"), "bad.csv", partial="1")
    html = r.get_data(as_text=True)
    assert r.status_code == 200 and 'id="nothing-imported"' not in html
    assert "读取 4 行，导入 1 行" in html and "拒收 3 行" in html and "已按要求仅导入有效行" in html
    assert get_db(client.application).query("SELECT COUNT(*) FROM survey_answers")[0][0] == 1


def test_unreadable_file_shows_the_reader_message(client, auth):
    auth.login("admin")
    r = upload(auth, "survey", b"PK\x03\x04 this is not a workbook", "broken.xlsx")
    assert r.status_code == 400 and "无法读取文件" in r.get_data(as_text=True)
    r = upload(auth, "scores", "名称,备注\n甲,乙\n".encode(), "noscore.csv")
    assert r.status_code == 400 and "无法读取文件" in r.get_data(as_text=True)
    r = auth.post("/imports/survey", {"quarter": "2026Q3"}, content_type="multipart/form-data")
    assert r.status_code == 400 and "请选择要上传的文件" in r.get_data(as_text=True)
    r = upload(auth, "survey", GOOD_SURVEY.encode(), "s.csv", quarter="2026Q5")
    assert r.status_code == 400
    assert upload(auth, "nonsense", b"x", "x.csv").status_code == 404
    assert [e["action"] for e in audit_entries(get_db(client.application), action="import.")] == [
        "import.scores.failed", "import.survey.failed"]


def test_upload_without_csrf_is_refused(client, auth):
    auth.login("admin")
    r = client.post("/imports/survey", data={"quarter": "2026Q3", "file": (io.BytesIO(GOOD_SURVEY.encode()), "s.csv")},
                    content_type="multipart/form-data")
    assert r.status_code == 400
    assert client.get("/api/v1/imports").get_json()["imports"] == []


def test_scores_import_and_api_with_token(client, auth, api_token):
    scores = "代码,县区,乡镇(街道),综合考核得分\n371702,牡丹区,,92.5\n371721,曹县,,abc\n"
    headers = {"Authorization": f"Bearer {api_token('assessor')}"}
    r = client.post("/api/v1/imports/scores", headers=headers, content_type="multipart/form-data",
                    data={"quarter": "2026Q3", "file": (io.BytesIO(scores.encode()), "scores.csv")})
    assert r.status_code == 422
    report = r.get_json()
    assert report["aborted"] is True and report["imported"] == 0 and report["valid"] == 1
    assert [(x["row"], x["column"], x["value"]) for x in report["rejected"]] == [(3, "综合考核得分", "abc")]
    r = client.post("/api/v1/imports/scores", headers=headers, content_type="multipart/form-data",
                    data={"quarter": "2026Q3", "partial": "true",
                          "file": (io.BytesIO(scores.encode()), "scores.csv")})
    assert r.status_code == 200
    report = r.get_json()
    assert report["imported"] == 1 and len(report["rejected"]) == 1 and report["rejected"][0]["value"] == "abc"
    headers = {"Authorization": f"Bearer {api_token('county')}"}
    r = client.post("/api/v1/imports/scores", headers=headers, content_type="multipart/form-data",
                    data={"quarter": "2026Q3", "file": (io.BytesIO(scores.encode()), "scores.csv")})
    assert r.status_code == 403


def test_templates_and_reports(client, auth):
    auth.login("admin")
    book = load_workbook(io.BytesIO(client.get("/imports/template/survey.xlsx").get_data()))
    assert book.active["A1"].value == "日期"
    assert client.get("/imports/template/scores.csv").get_data().decode("utf-8-sig").startswith("代码")
    assert client.get("/imports/template/survey.pdf").status_code == 404
    xlsx = client.get("/reports?quarter=2026Q3&format=xlsx")
    assert xlsx.status_code == 200 and xlsx.get_data()[:2] == b"PK"
    assert "attachment" in xlsx.headers["Content-Disposition"]
    assert client.get("/reports?quarter=2026Q3&format=html").mimetype == "text/html"
    assert client.get("/reports?quarter=2026Q3&format=docx").status_code == 400
    assert client.get("/reports?quarter=bad").status_code == 400
    assert client.get("/reports?result=999").status_code == 404
    assert audit_entries(get_db(client.application), action="report.download")[0]["detail"]["format"] == "html"


@pytest.mark.parametrize("user,target", [("assessor", "/imports#form-report"), ("city", "/bulletins#form-quarterly")])
def test_reports_without_a_quarter_is_a_page_to_choose_not_a_download(client, auth, user, target):
    auth.login(user)
    response = client.get("/reports")
    assert response.status_code == 302 and response.headers["Location"].endswith(target)
    page = client.get(target.split("#")[0]).get_data(as_text=True)
    assert f'id="{target.split("#")[1]}"' in page
