# Probe: single-turn products with many end users behind one account (answer boxes, help
# widgets) and homework helpers asking for the steps, from the real corpora.
# Usage (from the project root): python3 bench/probes/single_turn_products.py SEED OUT.jsonl [ANSWER_SCALE]
# ANSWER_SCALE: the homework helpers' answers are the corpus's worked answer repeated this often (default 2).
import json, random, sys, datetime, math
random.seed(int(sys.argv[1])); OUT=sys.argv[2]
ANSWER_SCALE=int(sys.argv[3]) if len(sys.argv)>3 else 2
D='../shared/data/corpora/'
chat=[]
for l in open(D+'benign-sharegpt.jsonl'):
    c=json.loads(l); u=[t for t in c['turns'] if t['role']=='user']; a=[t for t in c['turns'] if t['role']=='assistant']
    if u and a and len(u[0]['content'])<2000: chat.append((u[0]['content'],a[0]['content']))
math_=[(j['question'],j['answer']) for j in map(json.loads,open(D+'math-gsm8k-train.jsonl'))]
def ts(ms): return datetime.datetime.utcfromtimestamp(ms/1000).strftime('%Y-%m-%dT%H:%M:%S.')+'%03dZ'%(ms%1000)
T0=int(datetime.datetime(2026,3,1).timestamp()*1000)
def diurnal(n, days, tz):
    out=[]
    while len(out)<n:
        t=random.random()*days*86400
        h=((t/3600)+tz)%24
        w=max(0.02, math.sin(math.pi*(h-7)/16)) if 7<=h<=23 else 0.02
        if random.random()<w: out.append(int(T0+t*1000))
    return sorted(out)
ev=[]
def add(acct, t, system, prompt, answer, mt, ip):
    msgs=([{"role":"system","content":system}] if system else [])+[{"role":"user","content":prompt}]
    ev.append((t,{"id":"req_%s_%d"%(acct,len(ev)),"ts":ts(t),"account":acct,"key":"key_"+acct,"ip":ip,
      "meta":{"payment_fingerprint":"pf_"+acct,"signup_ts":ts(T0-200*86400000)},
      "endpoint":"/v1/chat/completions","status":200,"latency_ms":900.0,
      "request":{"model":"gpt-4o","messages":msgs,"max_tokens":mt,"temperature":0.7},
      "response":{"choices":[{"index":0,"message":{"role":"assistant","content":answer},"finish_reason":"stop"}],
         "usage":{"prompt_tokens":(len(prompt)+len(system or ''))//4,"completion_tokens":len(answer)//4}}}))
for k in range(4):
    acct="probe_qa_product_%d"%k; sysp=["You are the help assistant of Acme Search. Answer the user's question clearly.",None,"You are a friendly AI assistant inside a note-taking app.","Answer as the Ask-AI box of a Q&A site. Be accurate and concise."][k]
    for t in diurnal(random.randint(800,2500),3,random.choice([-5,0,1,8])):
        p,a=random.choice(chat); add(acct,t,sysp,p,a,1024,"34.1.%d.%d"%(k,random.randint(1,4)))
for k in range(3):
    acct="probe_tutor_%d"%k; sysp="You are a patient math tutor for middle-school students. Explain every step."
    for t in diurnal(random.randint(600,2000),3,random.choice([-5,1,8])):
        q,a=random.choice(math_)
        p=q+random.choice(["\n\nExplain step by step.","\nCan you show me the steps?",""," Please explain how to solve it step by step."])
        add(acct,t,sysp if k<2 else None,p,a*ANSWER_SCALE,1500,"35.2.%d.1"%k)
ev.sort(key=lambda e:e[0])
with open(OUT,'w') as f:
    for _,e in ev: f.write(json.dumps(e)+"\n")
